// Load generator for the Postfix policy delegation protocol: K persistent
// connections, each sending what Postfix 3.7's smtpd sends for one message
// (one request per RCPT, then one at END-OF-MESSAGE, every attribute Postfix
// fills in) and waiting for each answer, as smtpd does. Client addresses are
// drawn from a population so that per-client counters are created and hit.
// Prints requests per second and latency percentiles, and the actions seen,
// so that any policy server can be measured the same way.
//
//   policy_load HOST:PORT [--connections K] [--seconds S] [--clients N]
//               [--rcpts R] [--no-eom]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "load_report.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string host = "127.0.0.1";
    int port = 0;
    int connections = 8;
    double seconds = 5;
    int clients = 1000;
    int rcpts = 1;
    bool eom = true;
};


// The attributes Postfix 3.7 sends (see the integration notes), in its order.
std::string request(const std::string& state, const std::string& client, int port, int rcpt_count,
                    const std::string& recipient, unsigned queue_id) {
    char qid[16];
    std::snprintf(qid, sizeof qid, "%08X", queue_id);
    std::string r;
    r.reserve(900);
    r += "request=smtpd_access_policy\nprotocol_state=" + state + "\nprotocol_name=ESMTP\n";
    r += "client_address=" + client + "\nclient_name=unknown\nclient_port=" + std::to_string(port) + "\n";
    r += "reverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=25\n";
    r += "helo_name=client.example.test\nsender=sender@example.org\n";
    r += "recipient=" + recipient + "\nrecipient_count=" + std::to_string(rcpt_count) + "\n";
    r += std::string("queue_id=") + qid + "\ninstance=" + qid + ".1\nsize=" + (state == "RCPT" ? "0" : "1024") + "\n";
    r += "etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n";
    r += "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n";
    r += "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n";
    return r;
}

int connect_to(const Options& o) { return bench::connect_tcp(o.host, o.port); }

// Sends one request and reads its answer (up to the empty line); answers the
// action, or "" when the connection failed.
std::string ask(int fd, const std::string& req, std::string& buffer) {
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return "";
    while (true) {
        auto end = buffer.find("\n\n");
        if (end != std::string::npos) {
            std::string reply = buffer.substr(0, end);
            buffer.erase(0, end + 2);
            auto at = reply.find("action=");
            if (at == std::string::npos) return "?";
            std::string action = reply.substr(at + 7);
            return action.substr(0, action.find_first_of(" \n"));
        }
        char chunk[4096];
        ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return "";
        buffer.append(chunk, static_cast<std::size_t>(n));
    }
}

void worker(const Options& o, int index, Clock::time_point until, bench::LoadTotals& totals) {
    std::mt19937 rng(static_cast<unsigned>(index) * 7919u + 1u);
    std::uniform_int_distribution<int> pick(0, o.clients - 1);
    std::vector<double> lat;
    std::map<std::string, long> actions;
    long errors = 0;
    int fd = connect_to(o);
    std::string buffer;
    unsigned queue_id = static_cast<unsigned>(index) << 24;
    while (fd >= 0 && Clock::now() < until) {
        int c = pick(rng);
        std::string client = bench::client_address(c);
        ++queue_id;
        std::vector<std::string> reqs;
        for (int r = 0; r < o.rcpts; ++r) {
            reqs.push_back(request("RCPT", client, 40000 + index, r, "user" + std::to_string(r) + "@example.test",
                                   queue_id));
        }
        if (o.eom) reqs.push_back(request("END-OF-MESSAGE", client, 40000 + index, o.rcpts, "", queue_id));
        for (const auto& req : reqs) {
            auto started = Clock::now();
            std::string action = ask(fd, req, buffer);
            if (action.empty()) {
                ++errors;
                ::close(fd);
                fd = connect_to(o);
                buffer.clear();
                break;
            }
            lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - started).count());
            ++actions[action];
        }
    }
    if (fd >= 0) ::close(fd);
    totals.add(lat, actions, {}, errors);
}

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: policy_load HOST:PORT [--connections K] [--seconds S] [--clients N] [--rcpts R] "
                         "[--no-eom]\n");
    std::exit(64);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) usage();
    Options o;
    if (!bench::parse_target(argv[1], o.host, o.port)) usage();
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : (usage(), std::string()); };
        if (a == "--connections") o.connections = std::stoi(next());
        else if (a == "--seconds") o.seconds = std::stod(next());
        else if (a == "--clients") o.clients = std::stoi(next());
        else if (a == "--rcpts") o.rcpts = std::stoi(next());
        else if (a == "--no-eom") o.eom = false;
        else usage();
    }
    if (o.port <= 0 || o.connections < 1 || o.clients < 1 || o.rcpts < 1) usage();

    bench::LoadTotals totals;
    double took = bench::run_workers(o.connections, o.seconds,
                                     [&](int i, Clock::time_point until) { worker(o, i, until, totals); });
    bench::print_result(totals, took, "rps", "requests", "actions");
    return totals.errors > 0 && totals.latencies_us.empty() ? 1 : 0;
}
