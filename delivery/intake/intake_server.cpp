// SMTP/LMTP intake; see the header.
#include "delivery/intake/intake_server.h"

#include "common/daemon/logging.h"
#include "common/base/text_codec.h"
#include "delivery/intake/envelope_syntax.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace relayguard {

namespace {

constexpr int max_sessions = 64;
constexpr std::size_t max_recipients = 1000;
constexpr int idle_timeout_ms = 300'000;  // RFC 5321 4.5.3.2.7: 5 minutes

class Lines {
public:
    Lines(int fd, const std::atomic<bool>& stopping) : fd_(fd), stopping_(stopping) {}
    // One line without its CRLF; std::nullopt on close or timeout.
    std::optional<std::string> next(std::size_t max) {
        while (true) {
            auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();
                return line;
            }
            if (buf_.size() > max) return std::nullopt;
            // Short polls, so a stopping daemon does not wait out an idle client.
            int waited = 0;
            pollfd p{fd_, POLLIN, 0};
            while (::poll(&p, 1, 250) == 0) {
                waited += 250;
                if (stopping_ || waited >= idle_timeout_ms) return std::nullopt;
            }
            if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) return std::nullopt;
            char chunk[16384];
            ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
            if (n <= 0) return std::nullopt;
            buf_.append(chunk, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_;
    const std::atomic<bool>& stopping_;
    std::string buf_;
};

bool say(int fd, const std::string& line) {
    std::string out = line + "\r\n";
    return ::send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
}

// Answers a line and keeps the session going.
bool go_on(int fd, const std::string& line) {
    say(fd, line);
    return true;
}

}  // namespace

IntakeServer::IntakeServer(std::uint64_t max_message_size, std::vector<IpGroup> allowed_clients, Enqueue enqueue,
                           QueueFull full, const Clock& clock)
    : max_size_(max_message_size),
      allowed_clients_(std::move(allowed_clients)),
      enqueue_(std::move(enqueue)),
      full_(std::move(full)),
      clock_(clock) {}

IntakeServer::~IntakeServer() { stop(); }

void IntakeServer::start(UniqueFd listener) {
    listener_ = std::move(listener);
    acceptor_ = std::thread([this] { accept_loop(); });
}

void IntakeServer::stop() {
    stopping_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    // Sessions notice stopping_ within a quarter second, even idle ones. A
    // message not yet acknowledged is not lost: its client still has it.
    while (active_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void IntakeServer::accept_loop() {
    while (!stopping_) {
        pollfd p{listener_.get(), POLLIN, 0};
        if (::poll(&p, 1, 200) != 1) continue;
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
        if (fd < 0) continue;
        char host[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET) ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, host, sizeof host);
        if (ss.ss_family == AF_INET6) ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, host, sizeof host);
        // Refused before any thread or session: a client that may not relay
        // gets one line and costs nothing more. Unix-socket peers have no
        // address; the socket's mode and group decide who reaches them.
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
            auto client = IpAddress::parse(host);
            if (!client || find_group(allowed_clients_, *client) == nullptr) {
                say(fd, "554 5.7.1 Relay access denied: this client may not submit mail here");
                ::close(fd);
                std::string allowed;
                for (const auto& g : allowed_clients_) allowed += (allowed.empty() ? "" : ",") + g.name;
                security_log()->info("refused intake client={} rule=delivery.allowed_clients allowed=[{}] reply=\"554 5.7.1\"",
                                     host, allowed);
                continue;
            }
        }
        if (active_ >= max_sessions) {
            say(fd, "421 4.3.2 Too many connections; try again later");
            ::close(fd);
            continue;
        }
        ++active_;
        std::thread([this, fd, peer = std::string(host)] {
            serve(fd, peer);
            ::close(fd);
            --active_;
        }).detach();
    }
}

// One SMTP/LMTP session: who it is, and the envelope from MAIL on.
struct IntakeServer::Session {
    int fd;
    std::string peer;
    Lines& in;
    std::string helo;
    bool lmtp = false;
    std::optional<QueuedMessage> envelope;
};

namespace {

// MAIL's RFC 1870 and RFC 3461 parameters into `m`; the refusal's reply
// when one is bad or the declared size is over the limit (the last such
// parameter's, when several are).
std::optional<std::string> take_mail_params(const EsmtpParams& params, std::uint64_t max_size, QueuedMessage& m,
                                            std::uint64_t& declared_size) {
    std::optional<std::string> refusal;
    for (const auto& [key, value] : params) {
        if (key == "SIZE") {
            auto declared = parse_whole_number(value);
            if (!declared || *declared < 0) refusal = "501 5.5.4 Bad SIZE parameter";
            else if (static_cast<unsigned long long>(*declared) > max_size) refusal = "552 5.3.4 Message size exceeds fixed limit";
            else declared_size = static_cast<std::uint64_t>(*declared);
        } else if (key == "RET") {
            m.ret = ascii_upper(value);
            if (m.ret != "FULL" && m.ret != "HDRS") refusal = "501 5.5.4 Bad RET parameter";
        } else if (key == "ENVID") {
            if (value.empty() || value.size() > 100 || !valid_xtext(value)) refusal = "501 5.5.4 Bad ENVID parameter";
            m.envid = value;
        }
    }
    return refusal;
}

// RCPT's RFC 3461 parameters into `r`; the refusal's reply when one is bad
// (the last one's, when several are).
std::optional<std::string> take_rcpt_params(const EsmtpParams& params, QueuedRecipient& r) {
    std::optional<std::string> refusal;
    for (const auto& [key, value] : params) {
        if (key == "NOTIFY") {
            r.notify = valid_notify(value);
            if (r.notify.empty()) refusal = "501 5.5.4 Bad NOTIFY parameter";
        } else if (key == "ORCPT") {
            if (!valid_orcpt(value)) refusal = "501 5.5.4 Bad ORCPT parameter";
            r.orcpt = value;
        }
    }
    return refusal;
}

// The Received: header's date, in this host's local time as Postfix writes it.
std::string received_date(TimePoint now) { return format_time(now, "%a, %d %b %Y %H:%M:%S %z", TimeZone::local); }

}  // namespace

void IntakeServer::serve(int fd, std::string peer) {
    // The command table, as Postfix's smtpd has one: a verb, the words its
    // line must begin with, and its handler. A handler answers false when
    // the session is over.
    struct Command {
        std::string_view verb;
        std::string_view prefix;
        bool (IntakeServer::*handle)(Session&, const std::string&);
    };
    static constexpr Command commands[] = {
        {"EHLO", "", &IntakeServer::on_ehlo}, {"LHLO", "", &IntakeServer::on_ehlo},
        {"HELO", "", &IntakeServer::on_helo}, {"MAIL", "MAIL FROM:", &IntakeServer::on_mail},
        {"RCPT", "RCPT TO:", &IntakeServer::on_rcpt}, {"DATA", "", &IntakeServer::on_data},
        {"RSET", "", &IntakeServer::on_rset}, {"NOOP", "", &IntakeServer::on_noop},
        {"QUIT", "", &IntakeServer::on_quit},
    };
    Lines in(fd, stopping_);
    Session session{fd, std::move(peer), in, "", false, std::nullopt};
    if (!say(fd, "220 relayguard-relayd ESMTP")) return;
    while (!stopping_) {
        auto line = in.next(4096);
        if (!line) return;
        std::string verb = ascii_upper(line->substr(0, line->find(' ')));
        const Command* command = nullptr;
        for (const auto& c : commands) {
            if (c.verb == verb && ascii_upper(line->substr(0, c.prefix.size())) == c.prefix) command = &c;
        }
        if (!command) {
            say(fd, "502 5.5.2 Command not recognized");
            continue;
        }
        if (!(this->*command->handle)(session, *line)) return;
    }
}

bool IntakeServer::on_ehlo(Session& s, const std::string& line) {
    s.lmtp = ascii_upper(line.substr(0, 4)) == "LHLO";
    s.helo = line.size() > 5 ? line.substr(5) : "";
    s.envelope.reset();
    for (const std::string& l : {std::string("250-relayguard-relayd"), std::string("250-PIPELINING"),
                                 "250-SIZE " + std::to_string(max_size_), std::string("250-8BITMIME"),
                                 std::string("250-DSN"), std::string("250 ENHANCEDSTATUSCODES")}) {
        say(s.fd, l);
    }
    return true;
}

bool IntakeServer::on_helo(Session& s, const std::string& line) {
    s.helo = line.size() > 5 ? line.substr(5) : "";
    s.envelope.reset();
    say(s.fd, "250 relayguard-relayd");
    return true;
}

bool IntakeServer::on_mail(Session& s, const std::string& line) {
    if (s.envelope) return go_on(s.fd, "503 5.5.1 Nested MAIL command");
    auto parsed = path_and_params(std::string_view(line).substr(10));
    if (!parsed) return go_on(s.fd, "501 5.1.7 Bad sender address syntax");
    auto params = esmtp_params(parsed->second);
    if (!params) return go_on(s.fd, "501 5.5.4 Bad parameter syntax");
    QueuedMessage m;
    m.sender = parsed->first;
    std::uint64_t declared_size = 0;
    if (auto refusal = take_mail_params(*params, max_size_, m, declared_size)) return go_on(s.fd, *refusal);
    if (full_(declared_size)) return go_on(s.fd, "452 4.3.1 Queue full; try again later");
    s.envelope = std::move(m);
    say(s.fd, "250 2.1.0 Ok");
    return true;
}

bool IntakeServer::on_rcpt(Session& s, const std::string& line) {
    if (!s.envelope) return go_on(s.fd, "503 5.5.1 Need MAIL command");
    auto parsed = path_and_params(std::string_view(line).substr(8));
    if (!parsed || parsed->first.empty()) return go_on(s.fd, "501 5.1.3 Bad recipient address syntax");
    auto params = esmtp_params(parsed->second);
    if (!params) return go_on(s.fd, "501 5.5.4 Bad parameter syntax");
    QueuedRecipient r{parsed->first, RecipientState::pending, 0, "", ""};
    if (auto refusal = take_rcpt_params(*params, r)) return go_on(s.fd, *refusal);
    if (s.envelope->recipients.size() >= max_recipients) return go_on(s.fd, "452 4.5.3 Too many recipients");
    s.envelope->recipients.push_back(std::move(r));
    say(s.fd, "250 2.1.5 Ok");
    return true;
}

bool IntakeServer::on_data(Session& s, const std::string&) {
    if (!s.envelope || s.envelope->recipients.empty()) return go_on(s.fd, "503 5.5.1 Need RCPT command");
    say(s.fd, "354 End data with <CR><LF>.<CR><LF>");
    std::string content;
    bool too_big = false;
    while (true) {
        auto l = s.in.next(1 << 20);
        if (!l) return false;  // the client went away: nothing was acknowledged
        if (*l == ".") break;
        std::string_view text = *l;
        if (!text.empty() && text.front() == '.') text.remove_prefix(1);
        if (content.size() + text.size() + 2 > max_size_) too_big = true;
        if (!too_big) {
            content.append(text);
            content += "\r\n";
        }
    }
    if (too_big) {
        say(s.fd, "552 5.3.4 Message size exceeds fixed limit");
        s.envelope.reset();
        return true;
    }
    queue_message(s, content);
    s.envelope.reset();
    return true;
}

void IntakeServer::queue_message(Session& s, const std::string& content) {
    std::string received = "Received: from " + (s.helo.empty() ? std::string("unknown") : s.helo) + " (" + s.peer +
                           ")\r\n\tby relayguard-relayd with " + (s.lmtp ? "LMTP" : "ESMTP") + "; " + received_date(clock_.now()) +
                           "\r\n";
    std::size_t nrcpt = s.envelope->recipients.size();
    std::string from = s.envelope->sender;
    s.envelope->content = received + content;
    auto id = enqueue_(std::move(*s.envelope));
    // LMTP answers once per recipient, SMTP once per message.
    std::size_t replies = s.lmtp ? nrcpt : 1;
    if (!id) {
        spdlog::error("intake: could not queue a message from <{}>: {}", from, id.error());
        for (std::size_t i = 0; i < replies; ++i) say(s.fd, "451 4.3.0 Queue write failed; try again later");
        return;
    }
    spdlog::info("{}: queued from=<{}> nrcpt={} size={} client={}", *id, from, nrcpt, content.size(), s.peer);
    for (std::size_t i = 0; i < replies; ++i) say(s.fd, "250 2.0.0 Ok: queued as " + *id);
}

bool IntakeServer::on_rset(Session& s, const std::string&) {
    s.envelope.reset();
    say(s.fd, "250 2.0.0 Ok");
    return true;
}

bool IntakeServer::on_noop(Session& s, const std::string&) {
    say(s.fd, "250 2.0.0 Ok");
    return true;
}

bool IntakeServer::on_quit(Session& s, const std::string&) {
    say(s.fd, "221 2.0.0 Bye");
    return false;
}

}  // namespace relayguard
