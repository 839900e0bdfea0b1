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

}  // namespace

int main(int argc, char** argv) {
    bool from_headers = false;
    bool dot_ends = true;
    std::string sender;
    std::string config_path = std::getenv("RELAYGUARD_CONFIG") ? std::getenv("RELAYGUARD_CONFIG") : "/etc/relayguard/relayguard.toml";
    std::vector<std::string> rcpts;
    std::string notify, ret, envid;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-t") from_headers = true;
        else if (a == "-i" || a == "-oi") dot_ends = false;
        else if (a == "-f" && i + 1 < argc) sender = argv[++i];
        else if (a.rfind("-f", 0) == 0 && a.size() > 2) sender = a.substr(2);
        else if (a == "-F" && i + 1 < argc) ++i;
        else if (a == "-N" && i + 1 < argc) notify = relayguard::ascii_upper(argv[++i]);
        else if (a == "-R" && i + 1 < argc) ret = relayguard::ascii_upper(argv[++i]);
        else if (a == "-V" && i + 1 < argc) envid = argv[++i];
        else if (a == "--config" && i + 1 < argc) config_path = argv[++i];
        else if (a.rfind("-o", 0) == 0 || a.rfind("-b", 0) == 0 || a == "--") continue;  // sendmail options with no meaning here
        else if (!a.empty() && a[0] == '-') {
            std::cerr << "relayguard-sendmail: unsupported option " << a << "\n";
            return exit_usage;
        } else rcpts.push_back(a);
    }
    auto notify_ok = [&] {
        if (notify.empty() || notify == "NEVER") return true;
        for (std::size_t start = 0; start <= notify.size();) {
            auto comma = std::min(notify.find(',', start), notify.size());
            auto item = notify.substr(start, comma - start);
            if (item != "SUCCESS" && item != "FAILURE" && item != "DELAY") return false;
            start = comma + 1;
        }
        return true;
    };
    // ENVID travels as xtext (RFC 3461 4), at most 100 characters so encoded.
    std::string envid_xtext;
    for (unsigned char c : envid) {
        static constexpr char hex[] = "0123456789ABCDEF";
        if (c < 33 || c > 126 || c == '+' || c == '=') envid_xtext += {'+', hex[c >> 4], hex[c & 15]};
        else envid_xtext += static_cast<char>(c);
    }
    if (!notify_ok() || (!ret.empty() && ret != "FULL" && ret != "HDRS") || envid_xtext.size() > 100) {
        std::cerr << "relayguard-sendmail: bad -N, -R or -V value\n";
        return exit_usage;
    }
    // The packaged config is readable by root and group relayguard only:
    // those who may submit.
    if (::access(config_path.c_str(), R_OK) != 0 && errno == EACCES) {
        std::cerr << "relayguard-sendmail: cannot read " << config_path << ": " << not_allowed << "\n";
        return exit_noperm;
    }
    auto loaded = relayguard::load_config_file(config_path);
    for (const auto& e : loaded.errors) std::cerr << "relayguard-sendmail: " << e.to_string() << "\n";
    if (!loaded.config) return exit_config;
    const auto& s = loaded.config->delivery;

    // Headers as read, the body with line ends made CRLF.
    std::string content, line;
    bool in_headers = true;
    std::vector<std::string> header_rcpts;
    std::string last_header;
    while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (dot_ends && line == ".") break;
        if (in_headers) {
            if (line.empty()) {
                in_headers = false;
            } else if (line[0] == ' ' || line[0] == '\t') {
                if (last_header == "bcc") continue;
                if (last_header == "to" || last_header == "cc") addresses_in(line, header_rcpts);
            } else {
                auto colon = line.find(':');
                last_header = colon == std::string::npos ? "" : relayguard::ascii_lower(line.substr(0, colon));
                if (from_headers && (last_header == "to" || last_header == "cc" || last_header == "bcc")) {
                    addresses_in(line.substr(colon + 1), header_rcpts);
                }
                // Bcc is who must not be seen: it never leaves.
                if (last_header == "bcc") continue;
            }
        }
        content += line + "\r\n";
        if (content.size() > s.max_message_size) {
            std::cerr << "relayguard-sendmail: message larger than delivery.max_message_size\n";
            return exit_dataerr;
        }
    }
    if (from_headers) rcpts.insert(rcpts.end(), header_rcpts.begin(), header_rcpts.end());
    if (rcpts.empty()) {
        std::cerr << "relayguard-sendmail: no recipients\n";
        return exit_dataerr;
    }
    for (const auto& r : rcpts) {
        if (!relayguard::storable_address(r)) {
            std::cerr << "relayguard-sendmail: bad recipient address\n";
            return exit_dataerr;
        }
    }
    if (sender.empty()) {
        passwd* pw = ::getpwuid(::getuid());
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        sender = std::string(pw ? pw->pw_name : "root") + "@" + host;
    }
    if (!relayguard::storable_address(sender) || sender.find_first_of(" <>") != std::string::npos) {
        std::cerr << "relayguard-sendmail: bad sender address\n";
        return exit_usage;
    }
    relayguard::SystemClock clock;
    relayguard::QueuedMessage m;
    m.id = relayguard::new_queue_id(clock.now());
    m.arrival = clock.now();
    m.sender = sender;
    for (const auto& r : rcpts) m.recipients.push_back({r, relayguard::RecipientState::pending, 0, notify, ""});
    m.ret = ret;
    m.envid = envid_xtext;
    m.content = content;
    // Into incoming/, which root and the queue directory's group may write;
    // relayguard-relayd takes it into its queue within a second.
    auto dropped = relayguard::drop_into_incoming(s.queue_dir, m);
    if (!dropped && dropped.error().find(std::strerror(EACCES)) != std::string::npos) {
        std::cerr << "relayguard-sendmail: could not queue the message: " << dropped.error() << ": " << not_allowed << "\n";
        return exit_noperm;
    }
    if (!dropped) {
        std::cerr << "relayguard-sendmail: could not queue the message: " << dropped.error() << "\n";
        return exit_tempfail;
    }
    return 0;
}
