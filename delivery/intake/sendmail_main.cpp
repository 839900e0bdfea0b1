// relayguard-sendmail: the sendmail-compatible submission command for
// scripts and appliances. It writes the message straight into the relay
// client's queue (durably, as the SMTP intake does) and exits 0 only then;
// relayguard-relayd picks it up within a second.
//
//   relayguard-sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID]
//                       [--config FILE] [RECIPIENT...]
// -N, -R and -V are Sendmail's and Postfix's: the RFC 3461 NOTIFY for every
// recipient ("never" or any of "success,failure,delay"), RET ("full" or
// "hdrs") and ENVID of the message.
//
// Exit status: 0 queued, 64 usage, 65 no recipients, 75 the queue could not
// take it (try again), 77 the user may not submit (not root, not in the queue
// directory's group), 78 bad config.
#include <pwd.h>
#include <cerrno>
#include <cstring>
#include <unistd.h>

#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/base/system_clock.h"
#include "common/base/text_codec.h"
#include "conf/config.h"
#include "delivery/queue/queue.h"

namespace {

constexpr int exit_usage = 64;
constexpr int exit_dataerr = 65;
constexpr int exit_tempfail = 75;
constexpr int exit_noperm = 77;
constexpr const char* not_allowed =
    "only root and members of the queue directory's group (relayguard, as packaged) may submit";
constexpr int exit_config = 78;

// Addresses in a To/Cc/Bcc value: "<a@b>" when bracketed, else the bare word.
void addresses_in(const std::string& value, std::vector<std::string>& out) {
    std::stringstream parts(value);
    for (std::string part; std::getline(parts, part, ',');) {
        auto open = part.find('<');
        auto close = part.find('>', open == std::string::npos ? 0 : open);
        std::string addr;
        if (open != std::string::npos && close != std::string::npos) {
            addr = part.substr(open + 1, close - open - 1);
        } else {
            auto first = part.find_first_not_of(" \t");
            auto last = part.find_last_not_of(" \t");
            if (first != std::string::npos) addr = part.substr(first, last - first + 1);
        }
        if (!addr.empty() && addr.find('@') != std::string::npos) out.push_back(addr);
    }
}

// What the command line asks for.
struct Submission {
    bool from_headers = false;  // -t
    bool dot_ends = true;       // off with -i / -oi
    std::string sender;         // -f
    std::string config_path;
    std::vector<std::string> rcpts;
    std::string notify, ret, envid;  // -N, -R, -V as given (upper-cased)
};

// Why the command ends without queuing: the exit status and the words.
struct Refusal {
    int status;
    std::string why;
};

std::optional<Refusal> parse_arguments(int argc, char** argv, Submission& sub) {
    const char* env = std::getenv("RELAYGUARD_CONFIG");
    sub.config_path = env ? env : "/etc/relayguard/relayguard.toml";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-t") sub.from_headers = true;
        else if (a == "-i" || a == "-oi") sub.dot_ends = false;
        else if (a == "-f" && i + 1 < argc) sub.sender = argv[++i];
        else if (a.rfind("-f", 0) == 0 && a.size() > 2) sub.sender = a.substr(2);
        else if (a == "-F" && i + 1 < argc) ++i;
        else if (a == "-N" && i + 1 < argc) sub.notify = relayguard::ascii_upper(argv[++i]);
        else if (a == "-R" && i + 1 < argc) sub.ret = relayguard::ascii_upper(argv[++i]);
        else if (a == "-V" && i + 1 < argc) sub.envid = argv[++i];
        else if (a == "--config" && i + 1 < argc) sub.config_path = argv[++i];
        else if (a.rfind("-o", 0) == 0 || a.rfind("-b", 0) == 0 || a == "--") continue;  // sendmail options with no meaning here
        else if (!a.empty() && a[0] == '-') return Refusal{exit_usage, "unsupported option " + a};
        else sub.rcpts.push_back(a);
    }
    return std::nullopt;
}

bool valid_notify(const std::string& notify) {
    if (notify.empty() || notify == "NEVER") return true;
    for (std::size_t start = 0; start <= notify.size();) {
        auto comma = std::min(notify.find(',', start), notify.size());
        auto item = notify.substr(start, comma - start);
        if (item != "SUCCESS" && item != "FAILURE" && item != "DELAY") return false;
        start = comma + 1;
    }
    return true;
}

// ENVID travels as xtext (RFC 3461 4).
std::string xtext_encode(const std::string& text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (c < 33 || c > 126 || c == '+' || c == '=') out += {'+', hex[c >> 4], hex[c & 15]};
        else out += static_cast<char>(c);
    }
    return out;
}

// The message from standard input: headers as read (Bcc dropped: who must
// not be seen never leaves), the body with line ends made CRLF; with -t the
// To, Cc and Bcc addresses join the recipients.
std::optional<Refusal> read_message(std::istream& in, Submission& sub, std::uint64_t max_size, std::string& content) {
    std::string line, last_header;
    bool in_headers = true;
    std::vector<std::string> header_rcpts;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (sub.dot_ends && line == ".") break;
        if (in_headers) {
            if (line.empty()) {
                in_headers = false;
            } else if (line[0] == ' ' || line[0] == '\t') {
                if (last_header == "bcc") continue;
                if (last_header == "to" || last_header == "cc") addresses_in(line, header_rcpts);
            } else {
                auto colon = line.find(':');
                last_header = colon == std::string::npos ? "" : relayguard::ascii_lower(line.substr(0, colon));
                if (sub.from_headers && (last_header == "to" || last_header == "cc" || last_header == "bcc")) {
                    addresses_in(line.substr(colon + 1), header_rcpts);
                }
                if (last_header == "bcc") continue;
            }
        }
        content += line + "\r\n";
        if (content.size() > max_size) return Refusal{exit_dataerr, "message larger than delivery.max_message_size"};
    }
    if (sub.from_headers) sub.rcpts.insert(sub.rcpts.end(), header_rcpts.begin(), header_rcpts.end());
    return std::nullopt;
}

// The envelope checked, the sender defaulted to the user at this host.
std::optional<Refusal> check_envelope(Submission& sub) {
    if (sub.rcpts.empty()) return Refusal{exit_dataerr, "no recipients"};
    for (const auto& r : sub.rcpts) {
        if (!relayguard::storable_address(r)) return Refusal{exit_dataerr, "bad recipient address"};
    }
    if (sub.sender.empty()) {
        passwd* pw = ::getpwuid(::getuid());
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        sub.sender = std::string(pw ? pw->pw_name : "root") + "@" + host;
    }
    if (!relayguard::storable_address(sub.sender) || sub.sender.find_first_of(" <>") != std::string::npos) {
        return Refusal{exit_usage, "bad sender address"};
    }
    return std::nullopt;
}

// Into incoming/, which root and the queue directory's group may write;
// relayguard-relayd takes it into its queue within a second.
std::optional<Refusal> submit(const Submission& sub, const std::string& queue_dir, std::string content) {
    relayguard::SystemClock clock;
    relayguard::QueuedMessage m;
    m.id = relayguard::new_queue_id(clock.now());
    m.arrival = clock.now();
    m.sender = sub.sender;
    for (const auto& r : sub.rcpts) m.recipients.push_back({r, relayguard::RecipientState::pending, 0, sub.notify, ""});
    m.ret = sub.ret;
    m.envid = xtext_encode(sub.envid);
    m.content = std::move(content);
    auto dropped = relayguard::drop_into_incoming(queue_dir, m);
    if (dropped) return std::nullopt;
    std::string why = "could not queue the message: " + dropped.error();
    if (dropped.error().find(std::strerror(EACCES)) != std::string::npos) {
        return Refusal{exit_noperm, why + ": " + not_allowed};
    }
    return Refusal{exit_tempfail, why};
}

int refused(const Refusal& r) {
    std::cerr << "relayguard-sendmail: " << r.why << "\n";
    return r.status;
}

}  // namespace

int main(int argc, char** argv) {
    Submission sub;
    if (auto r = parse_arguments(argc, argv, sub)) return refused(*r);
    // ENVID at most 100 characters as xtext.
    if (!valid_notify(sub.notify) || (!sub.ret.empty() && sub.ret != "FULL" && sub.ret != "HDRS") ||
        xtext_encode(sub.envid).size() > 100) {
        return refused({exit_usage, "bad -N, -R or -V value"});
    }
    // The packaged config is readable by root and group relayguard only:
    // those who may submit.
    if (::access(sub.config_path.c_str(), R_OK) != 0 && errno == EACCES) {
        return refused({exit_noperm, "cannot read " + sub.config_path + ": " + not_allowed});
    }
    auto loaded = relayguard::load_config_file(sub.config_path);
    for (const auto& e : loaded.errors) std::cerr << "relayguard-sendmail: " << e.to_string() << "\n";
    if (!loaded.config) return exit_config;
    const auto& s = loaded.config->delivery;
    std::string content;
    if (auto r = read_message(std::cin, sub, s.max_message_size, content)) return refused(*r);
    if (auto r = check_envelope(sub)) return refused(*r);
    if (auto r = submit(sub, s.queue_dir, std::move(content))) return refused(*r);
    return 0;
}
