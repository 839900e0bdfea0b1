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
// Every local user may submit, as with Postfix's sendmail: the package
// installs this program setgid relayguard (dpkg-statoverride), the way
// Postfix's postdrop is setgid postdrop. That group may only pass the queue
// directory and drop files into incoming/ (write and search, sticky), and
// read the config. So that no user can point it at another file the group
// reads, a setgid run takes neither --config nor RELAYGUARD_CONFIG.
// Each file records its submitter's real uid: relayd logs it at pickup.
//
// Like Postfix's cleanup, a bare name (sender or recipient) gets the origin
// domain (delivery.origin), and a message without From:, Date: or
// Message-ID: gets them.
//
// Exit status: 0 queued, 64 usage, 65 no recipients, 75 the queue could not
// take it (try again), 77 the user may not submit (the program is not
// setgid relayguard and the user not root nor in the group), 78 bad config.
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/auxv.h>
#include <sys/statvfs.h>
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
#include "common/base/version.h"
#include "conf/config.h"
#include "delivery/intake/local_submission.h"
#include "delivery/queue/queue.h"

// A sanitizer build only: LeakSanitizer cannot inspect a setgid process (it
// is not dumpable), fails every setgid run at exit, and such a run reads no
// options from the environment; its leak check is off there alone.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return ::getauxval(AT_SECURE) ? "detect_leaks=0" : ""; }
extern "C" const char* __lsan_default_options() { return ::getauxval(AT_SECURE) ? "detect_leaks=0" : ""; }
#endif

namespace {

constexpr int exit_usage = 64;
constexpr int exit_dataerr = 65;
constexpr int exit_tempfail = 75;
constexpr int exit_noperm = 77;
constexpr const char* packaged_config = "/etc/relayguard/relayguard.toml";
constexpr const char* not_allowed =
    "relayguard-sendmail must be setgid relayguard for users other than root and the group's members; "
    "the package sets it (check: dpkg-statoverride --list /usr/bin/relayguard-sendmail; "
    "set: dpkg-statoverride --update --add root relayguard 2755 /usr/bin/relayguard-sendmail)";
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
    std::string full_name;      // -F
    std::string config_path;
    bool config_chosen = false;  // --config or RELAYGUARD_CONFIG
    std::vector<std::string> rcpts;
    std::string notify, ret, envid;  // -N, -R, -V as given (upper-cased)
    bool help = false, version = false;
};

constexpr const char* usage_text =
    "usage: relayguard-sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [-N DSN] [-R RET] [-V ENVID]\n"
    "                           [--config FILE] [RECIPIENT...]\n"
    "       relayguard-sendmail --help | --version\n"
    "Reads a message on standard input and puts it in the relay client's queue.\n"
    "  -t         recipients from the To, Cc and Bcc headers as well (Bcc is removed)\n"
    "  -i, -oi    a line with a single dot does not end the message\n"
    "  -f SENDER  the envelope sender (default: your login name @ delivery.origin)\n"
    "  -N DSN     never, or any of success,failure,delay\n"
    "  -R RET     full or hdrs\n"
    "  -V ENVID   the envelope id returned in reports\n";

// Why the command ends without queuing: the exit status and the words.
struct Refusal {
    int status;
    std::string why;
};

std::optional<Refusal> parse_arguments(int argc, char** argv, Submission& sub) {
    // secure_getenv: nothing from the environment in a setgid run.
    const char* env = ::secure_getenv("RELAYGUARD_CONFIG");
    sub.config_path = env ? env : packaged_config;
    sub.config_chosen = env != nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help") sub.help = true;
        else if (a == "--version") sub.version = true;
        else if (a == "-t") sub.from_headers = true;
        else if (a == "-i" || a == "-oi") sub.dot_ends = false;
        else if (a == "-f" && i + 1 < argc) sub.sender = argv[++i];
        else if (a.rfind("-f", 0) == 0 && a.size() > 2) sub.sender = a.substr(2);
        else if (a == "-F" && i + 1 < argc) sub.full_name = argv[++i];
        else if (a == "-N" && i + 1 < argc) sub.notify = relayguard::ascii_upper(argv[++i]);
        else if (a == "-R" && i + 1 < argc) sub.ret = relayguard::ascii_upper(argv[++i]);
        else if (a == "-V" && i + 1 < argc) sub.envid = argv[++i];
        else if (a == "--config" && i + 1 < argc) {
            sub.config_path = argv[++i];
            sub.config_chosen = true;
        }
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

// The envelope checked and qualified: the sender defaults to the user at
// the origin, and a bare name gets the origin's domain.
std::optional<Refusal> check_envelope(Submission& sub, const std::string& origin) {
    if (sub.rcpts.empty()) return Refusal{exit_dataerr, "no recipients"};
    for (auto& r : sub.rcpts) {
        r = relayguard::qualified(r, origin);
        if (!relayguard::storable_address(r)) return Refusal{exit_dataerr, "bad recipient address"};
    }
    if (sub.sender.empty()) {
        passwd* pw = ::getpwuid(::getuid());
        sub.sender = pw ? pw->pw_name : "root";
    }
    if (sub.sender == "<>") sub.sender.clear();  // the null sender, as -f '<>' asks
    sub.sender = relayguard::qualified(sub.sender, origin);
    if (!sub.sender.empty() &&
        (!relayguard::storable_address(sub.sender) || sub.sender.find_first_of(" <>") != std::string::npos)) {
        return Refusal{exit_usage, "bad sender address"};
    }
    return std::nullopt;
}

// Into incoming/, which root and the queue directory's group may write;
// relayguard-relayd takes it into its queue within a second.
std::optional<Refusal> submit(const Submission& sub, const std::string& queue_dir, relayguard::QueuedMessage m) {
    m.sender = sub.sender;
    for (const auto& r : sub.rcpts) m.recipients.push_back({r, relayguard::RecipientState::pending, 0, sub.notify, ""});
    m.ret = sub.ret;
    m.envid = xtext_encode(sub.envid);
    auto dropped = relayguard::drop_into_incoming(queue_dir, m);
    if (dropped) return std::nullopt;
    std::string why = "could not queue the message: " + dropped.error();
    if (dropped.error().find(std::strerror(EACCES)) != std::string::npos) {
        return Refusal{exit_noperm, why + ": " + not_allowed};
    }
    return Refusal{exit_tempfail, why};
}

// The host's full name (as `hostname -f`), or `host` when none is known.
std::string canonical_name(const char* host) {
    addrinfo hints{};
    hints.ai_flags = AI_CANONNAME;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host, nullptr, &hints, &found) != 0 || !found) return host;
    std::string name = found->ai_canonname ? found->ai_canonname : host;
    ::freeaddrinfo(found);
    return name;
}

int refused(const Refusal& r) {
    std::cerr << "relayguard-sendmail: " << r.why << "\n";
    return r.status;
}

}  // namespace

int main(int argc, char** argv) {
    Submission sub;
    if (auto r = parse_arguments(argc, argv, sub)) return refused(*r);
    if (sub.help) {
        std::cout << usage_text;
        return 0;
    }
    if (sub.version) {
        std::cout << "relayguard-sendmail " << relayguard::relayguard_version() << "\n";
        return 0;
    }
    // ENVID at most 100 characters as xtext.
    if (!valid_notify(sub.notify) || (!sub.ret.empty() && sub.ret != "FULL" && sub.ret != "HDRS") ||
        xtext_encode(sub.envid).size() > 100) {
        return refused({exit_usage, "bad -N, -R or -V value"});
    }
    bool setgid_run = ::getegid() != ::getgid() && ::getuid() != 0;
    if (setgid_run && sub.config_chosen) {
        return refused({exit_usage, "--config is not taken from users: this run is setgid; it reads " +
                                        std::string(packaged_config)});
    }
    // The packaged config is readable by root and group relayguard only,
    // which a setgid run has (AT_EACCESS: checked with the effective group).
    if (::faccessat(AT_FDCWD, sub.config_path.c_str(), R_OK, AT_EACCESS) != 0 && errno == EACCES) {
        return refused({exit_noperm, "cannot read " + sub.config_path + ": " + not_allowed});
    }
    auto loaded = relayguard::load_config_file(sub.config_path);
    for (const auto& e : loaded.errors) std::cerr << "relayguard-sendmail: " << e.to_string() << "\n";
    if (!loaded.config) return exit_config;
    const auto& s = loaded.config->delivery;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::string origin = relayguard::mail_origin(s, "/etc/mailname", canonical_name(host));
    std::string content;
    if (auto r = read_message(std::cin, sub, s.max_message_size, content)) return refused(*r);
    if (auto r = check_envelope(sub, origin)) return refused(*r);
    relayguard::SystemClock clock;
    relayguard::QueuedMessage m;
    m.arrival = clock.now();
    m.id = relayguard::new_queue_id(m.arrival);
    m.content = relayguard::with_missing_headers(content, {sub.sender, sub.full_name}, m.arrival, m.id, origin);
    m.submitter_uid = ::getuid();  // the real uid: who ran it, setgid or not
    if (m.content.size() > s.max_message_size) return refused({exit_dataerr, "message larger than delivery.max_message_size"});
    // delivery.queue_min_free, as the SMTP intake keeps it: no local user
    // fills the queue's file system.
    struct statvfs fs {};
    if (::statvfs(s.queue_dir.c_str(), &fs) == 0 &&
        static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize < s.queue_min_free + m.content.size()) {
        return refused({exit_tempfail, "the queue's file system has less than delivery.queue_min_free free; try later"});
    }
    if (auto r = submit(sub, s.queue_dir, std::move(m))) return refused(*r);
    return 0;
}
