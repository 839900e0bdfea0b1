// Load generator for the milter protocol (version 6), speaking to a milter
// as Postfix's smtpd does: negotiate, then per SMTP session connect, helo,
// mail, rcpt x R, header x 5, end of headers, one body chunk, end of message.
// K sessions run at once. With --reuse a milter connection carries one
// session after another (QUIT_NC between them, never ABORT then QUIT_NC,
// which libmilter 8.17 does not answer); without it each session opens its
// own connection and ends with QUIT, as Postfix does. Client addresses are
// drawn from a population. Stages the milter asked to skip (SMFIP_NO*) are
// not sent and stages it asked not to answer (SMFIP_NR_*) are not waited for.
// Prints transactions per second, latency percentiles and the outcomes.
//
//   milter_load HOST:PORT [--sessions K] [--seconds S] [--clients N]
//               [--rcpts R] [--reuse] [--hold SECONDS]
// --hold opens K sessions up to HELO and keeps them open for SECONDS (for
// measuring the milter's memory with many sessions), then ends them.
#include <arpa/inet.h>
#include <libmilter/mfdef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
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
    int sessions = 8;
    double seconds = 5;
    int clients = 1000;
    int rcpts = 1;
    bool reuse = false;
    double hold = 0;
};


// One milter connection, from the MTA's side.
class MilterConnection {
public:
    explicit MilterConnection(const Options& o) {
        fd_ = bench::connect_tcp(o.host, o.port);
        if (fd_ >= 0) negotiate();
    }
    ~MilterConnection() { close(); }
    MilterConnection(const MilterConnection&) = delete;
    MilterConnection& operator=(const MilterConnection&) = delete;

    bool ok() const { return fd_ >= 0; }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    // Sends a command; when the milter answers this stage, answers the reply
    // code ('c', 'a', 'r', 't', 'y', ...), else 'c'. 0 when the connection failed.
    char stage(char cmd, const std::string& data, unsigned long skip_flag, unsigned long no_reply_flag) {
        if (skip_flag && (protocol_ & skip_flag)) return 'c';
        if (!send(cmd, data)) return 0;
        if (no_reply_flag && (protocol_ & no_reply_flag)) return 'c';
        return reply();
    }
    bool send(char cmd, const std::string& data) {
        std::uint32_t len = htonl(static_cast<std::uint32_t>(data.size() + 1));
        std::string packet(reinterpret_cast<const char*>(&len), 4);
        packet += cmd;
        packet += data;
        return ::send(fd_, packet.data(), packet.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(packet.size());
    }
    // The next reply that decides (modifications and progress are skipped).
    char reply() {
        while (true) {
            std::string packet;
            if (!read_packet(packet) || packet.empty()) return 0;
            char code = packet[0];
            if (std::strchr("+-2bhimeqlp", code) == nullptr) return code;
        }
    }

private:
    void negotiate() {
        std::string data;
        auto put32 = [&](std::uint32_t v) {
            v = htonl(v);
            data.append(reinterpret_cast<const char*>(&v), 4);
        };
        put32(6);
        put32(0x1FF);        // every action a v6 milter may ask for
        put32(0x001FFFFF);   // every protocol step and no-reply option
        std::string packet;
        if (!send(SMFIC_OPTNEG, data) || !read_packet(packet) || packet.size() < 13 || packet[0] != SMFIC_OPTNEG) {
            close();
            return;
        }
        std::uint32_t p;
        std::memcpy(&p, packet.data() + 9, 4);
        protocol_ = ntohl(p);
    }
    bool read_exact(char* out, std::size_t n) {
        while (n > 0) {
            ssize_t got = ::recv(fd_, out, n, 0);
            if (got <= 0) return false;
            out += got;
            n -= static_cast<std::size_t>(got);
        }
        return true;
    }
    bool read_packet(std::string& packet) {
        std::uint32_t len;
        if (!read_exact(reinterpret_cast<char*>(&len), 4)) return false;
        len = ntohl(len);
        if (len == 0 || len > (1u << 20)) return false;
        packet.resize(len);
        return read_exact(packet.data(), len);
    }

    int fd_ = -1;
    unsigned long protocol_ = 0;
};

std::string nul_joined(std::initializer_list<std::string> parts) {
    std::string out;
    for (const auto& p : parts) {
        out += p;
        out += '\0';
    }
    return out;
}

// One SMTP session's milter conversation; answers the outcome, or "!stage"
// when the connection failed at that stage.
std::string session(MilterConnection& m, const std::string& client, int rcpts, unsigned serial) {
    char qid[16];
    std::snprintf(qid, sizeof qid, "%08X", serial);
    auto decided = [](char c) -> std::string {
        switch (c) {
            case 'r': return "reject";
            case 't': return "tempfail";
            case 'y': return "replycode";
            case 'a': return "accept";
            case 'd': return "discard";
            default: return "other";
        }
    };
    m.send(SMFIC_MACRO, std::string(1, SMFIC_CONNECT) +
                            nul_joined({"j", "mx.example.test", "{daemon_name}", "bench", "{client_addr}", client,
                                        "{client_name}", "unknown", "{client_ptr}", "unknown", "_", "unknown [" + client + "]"}));
    std::string connect = std::string("unknown") + '\0' + '4';
    std::uint16_t port = htons(40000);
    connect.append(reinterpret_cast<const char*>(&port), 2);
    connect += client;
    connect += '\0';
    char c = m.stage(SMFIC_CONNECT, connect, SMFIP_NOCONNECT, SMFIP_NR_CONN);
    if (c != 'c') return c ? decided(c) : "!connect";
    if ((c = m.stage(SMFIC_HELO, nul_joined({"client.example.test"}), SMFIP_NOHELO, SMFIP_NR_HELO)) != 'c') {
        return c ? decided(c) : "!helo";
    }
    m.send(SMFIC_MACRO, std::string(1, SMFIC_MAIL) + nul_joined({"i", qid, "{mail_addr}", "sender@example.org"}));
    if ((c = m.stage(SMFIC_MAIL, nul_joined({"<sender@example.org>", "SIZE=1024"}), SMFIP_NOMAIL, SMFIP_NR_MAIL)) != 'c') {
        return c ? decided(c) : "!mail";
    }
    for (int r = 0; r < rcpts; ++r) {
        std::string rcpt = "user" + std::to_string(r % 2 + 1) + "@example.test";
        m.send(SMFIC_MACRO, std::string(1, SMFIC_RCPT) +
                                nul_joined({"{rcpt_addr}", rcpt, "{rcpt_mailer}", "local", "{rcpt_host}", "example.test"}));
        if ((c = m.stage(SMFIC_RCPT, nul_joined({"<" + rcpt + ">"}), SMFIP_NORCPT, SMFIP_NR_RCPT)) != 'c') {
            return c ? decided(c) : "!rcpt";
        }
    }
    const char* headers[5][2] = {{"From", "<sender@example.org>"},
                                 {"To", "<user1@example.test>"},
                                 {"Subject", "benchmark"},
                                 {"Date", "Mon, 23 Nov 2026 04:00:00 +0000"},
                                 {"Message-ID", "<bench@client.example.test>"}};
    for (auto& h : headers) {
        if ((c = m.stage(SMFIC_HEADER, nul_joined({h[0], h[1]}), SMFIP_NOHDRS, SMFIP_NR_HDR)) != 'c') {
            return c ? decided(c) : "!header";
        }
    }
    if ((c = m.stage(SMFIC_EOH, "", SMFIP_NOEOH, SMFIP_NR_EOH)) != 'c') return c ? decided(c) : "!eoh";
    std::string body(1024, 'x');
    for (std::size_t i = 76; i < body.size(); i += 78) body.replace(i, 2, "\r\n");
    if ((c = m.stage(SMFIC_BODY, body, SMFIP_NOBODY, SMFIP_NR_BODY)) != 'c') return c ? decided(c) : "!body";
    m.send(SMFIC_MACRO, std::string(1, SMFIC_BODYEOB) + nul_joined({"i", qid}));
    if (!m.send(SMFIC_BODYEOB, "")) return "!eom";
    c = m.reply();
    if (c == 0) return "!eom";
    return c == 'c' || c == 'a' ? "accepted" : decided(c);
}


void worker(const Options& o, int index, Clock::time_point until, bench::LoadTotals& totals) {
    std::mt19937 rng(static_cast<unsigned>(index) * 7919u + 1u);
    std::uniform_int_distribution<int> pick(0, o.clients - 1);
    std::vector<double> lat;
    std::map<std::string, long> outcomes, failures;
    long errors = 0;
    unsigned serial = static_cast<unsigned>(index) << 24;
    std::unique_ptr<MilterConnection> kept;
    while (Clock::now() < until) {
        auto started = Clock::now();
        std::unique_ptr<MilterConnection> fresh;
        if (!o.reuse || !kept || !kept->ok()) {
            fresh = std::make_unique<MilterConnection>(o);
            if (!fresh->ok()) {
                ++errors;
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
        }
        MilterConnection& m = fresh ? *fresh : *kept;
        std::string outcome = session(m, bench::client_address(pick(rng)), o.rcpts, ++serial);
        if (outcome.front() == '!') {
            ++errors;
            ++failures[outcome.substr(1)];
            kept.reset();
            continue;
        }
        if (o.reuse) {
            m.send(SMFIC_QUIT_NC, "");
            if (fresh) kept = std::move(fresh);
        } else {
            m.send(SMFIC_QUIT, "");
        }
        lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - started).count());
        ++outcomes[outcome];
    }
    if (kept) kept->send(SMFIC_QUIT, "");
    totals.add(lat, outcomes, failures, errors);
}

// --hold: K sessions opened up to HELO, all kept open for a while.
int hold(const Options& o) {
    std::vector<std::unique_ptr<MilterConnection>> open;
    int opened = 0;
    for (int i = 0; i < o.sessions; ++i) {
        auto m = std::make_unique<MilterConnection>(o);
        if (!m->ok()) continue;
        std::string connect = std::string("unknown") + '\0' + '4';
        std::uint16_t port = htons(40000);
        connect.append(reinterpret_cast<const char*>(&port), 2);
        connect += bench::client_address(i % o.clients);
        connect += '\0';
        if (m->stage(SMFIC_CONNECT, connect, SMFIP_NOCONNECT, SMFIP_NR_CONN) != 'c') continue;
        if (m->stage(SMFIC_HELO, nul_joined({"client.example.test"}), SMFIP_NOHELO, SMFIP_NR_HELO) != 'c') continue;
        open.push_back(std::move(m));
        ++opened;
    }
    std::printf("HELD sessions=%d\n", opened);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::duration<double>(o.hold));
    for (auto& m : open) m->send(SMFIC_QUIT, "");
    return opened == o.sessions ? 0 : 1;
}

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: milter_load HOST:PORT [--sessions K] [--seconds S] [--clients N] [--rcpts R] "
                         "[--reuse] [--hold SECONDS]\n");
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
        if (a == "--sessions") o.sessions = std::stoi(next());
        else if (a == "--seconds") o.seconds = std::stod(next());
        else if (a == "--clients") o.clients = std::stoi(next());
        else if (a == "--rcpts") o.rcpts = std::stoi(next());
        else if (a == "--reuse") o.reuse = true;
        else if (a == "--hold") o.hold = std::stod(next());
        else usage();
    }
    if (o.port <= 0 || o.sessions < 1 || o.clients < 1 || o.rcpts < 1) usage();
    if (o.hold > 0) return hold(o);

    bench::LoadTotals totals;
    double took = bench::run_workers(o.sessions, o.seconds,
                                     [&](int i, Clock::time_point until) { worker(o, i, until, totals); });
    bench::print_result(totals, took, "tps", "transactions", "outcomes");
    return totals.latencies_us.empty() ? 1 : 0;
}
