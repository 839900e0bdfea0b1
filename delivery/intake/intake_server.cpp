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
#include <ctime>

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

std::string rfc5322_date() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S %z", &tm);
    return buf;
}

}  // namespace

IntakeServer::IntakeServer(std::uint64_t max_message_size, std::vector<IpGroup> allowed_clients, Enqueue enqueue,
                           QueueFull full)
    : max_size_(max_message_size),
      allowed_clients_(std::move(allowed_clients)),
      enqueue_(std::move(enqueue)),
      full_(std::move(full)) {}

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

void IntakeServer::serve(int fd, std::string peer) {
    Lines in(fd, stopping_);
    if (!say(fd, "220 relayguard-relayd ESMTP")) return;
    std::string helo;
    bool lmtp = false;
    std::optional<QueuedMessage> envelope;  // from MAIL on
    auto reset = [&] { envelope.reset(); };
    while (!stopping_) {
        auto line = in.next(4096);
        if (!line) return;
        std::string verb = ascii_upper(line->substr(0, line->find(' ')));
        if (verb == "EHLO" || verb == "LHLO") {
            lmtp = verb == "LHLO";
            helo = line->size() > 5 ? line->substr(5) : "";
            reset();
            say(fd, "250-relayguard-relayd");
            say(fd, "250-PIPELINING");
            say(fd, "250-SIZE " + std::to_string(max_size_));
            say(fd, "250-8BITMIME");
            say(fd, "250-DSN");
            say(fd, "250 ENHANCEDSTATUSCODES");
        } else if (verb == "HELO") {
            helo = line->size() > 5 ? line->substr(5) : "";
            reset();
            say(fd, "250 relayguard-relayd");
        } else if (verb == "MAIL" && ascii_upper(line->substr(0, 10)) == "MAIL FROM:") {
            if (envelope) {
                say(fd, "503 5.5.1 Nested MAIL command");
                continue;
            }
            auto parsed = path_and_params(std::string_view(*line).substr(10));
            if (!parsed) {
                say(fd, "501 5.1.7 Bad sender address syntax");
                continue;
            }
            QueuedMessage m;
            m.sender = parsed->first;
            std::string refusal;
            std::uint64_t declared_size = 0;
            auto params = esmtp_params(parsed->second);
            if (!params) {
                say(fd, "501 5.5.4 Bad parameter syntax");
                continue;
            }
            for (const auto& [key, value] : *params) {
                if (key == "SIZE") {
                    auto declared = parse_whole_number(value);
                    if (!declared || *declared < 0) refusal = "501 5.5.4 Bad SIZE parameter";
                    else if (static_cast<unsigned long long>(*declared) > max_size_) refusal = "552 5.3.4 Message size exceeds fixed limit";
                    else declared_size = static_cast<std::uint64_t>(*declared);
                } else if (key == "RET") {
                    m.ret = ascii_upper(value);
                    if (m.ret != "FULL" && m.ret != "HDRS") refusal = "501 5.5.4 Bad RET parameter";
                } else if (key == "ENVID") {
                    if (value.empty() || value.size() > 100 || !valid_xtext(value)) refusal = "501 5.5.4 Bad ENVID parameter";
                    m.envid = value;
                }
            }
            if (!refusal.empty()) {
                say(fd, refusal);
                continue;
            }
            if (full_(declared_size)) {
                say(fd, "452 4.3.1 Queue full; try again later");
                continue;
            }
            envelope = std::move(m);
            say(fd, "250 2.1.0 Ok");
        } else if (verb == "RCPT" && ascii_upper(line->substr(0, 8)) == "RCPT TO:") {
            if (!envelope) {
                say(fd, "503 5.5.1 Need MAIL command");
                continue;
            }
            auto parsed = path_and_params(std::string_view(*line).substr(8));
            if (!parsed || parsed->first.empty()) {
                say(fd, "501 5.1.3 Bad recipient address syntax");
                continue;
            }
            QueuedRecipient r{parsed->first, RecipientState::pending, 0, "", ""};
            std::string refusal;
            auto params = esmtp_params(parsed->second);
            if (!params) {
                say(fd, "501 5.5.4 Bad parameter syntax");
                continue;
            }
            for (const auto& [key, value] : *params) {
                if (key == "NOTIFY") {
                    r.notify = valid_notify(value);
                    if (r.notify.empty()) refusal = "501 5.5.4 Bad NOTIFY parameter";
                } else if (key == "ORCPT") {
                    if (!valid_orcpt(value)) refusal = "501 5.5.4 Bad ORCPT parameter";
                    r.orcpt = value;
                }
            }
            if (!refusal.empty()) {
                say(fd, refusal);
            } else if (envelope->recipients.size() >= max_recipients) {
                say(fd, "452 4.5.3 Too many recipients");
            } else {
                envelope->recipients.push_back(std::move(r));
                say(fd, "250 2.1.5 Ok");
            }
        } else if (verb == "DATA") {
            if (!envelope || envelope->recipients.empty()) {
                say(fd, "503 5.5.1 Need RCPT command");
                continue;
            }
            say(fd, "354 End data with <CR><LF>.<CR><LF>");
            std::string content;
            bool too_big = false;
            while (true) {
                auto l = in.next(1 << 20);
                if (!l) return;  // the client went away: nothing was acknowledged
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
                say(fd, "552 5.3.4 Message size exceeds fixed limit");
                reset();
                continue;
            }
            std::string received = "Received: from " + (helo.empty() ? std::string("unknown") : helo) + " (" + peer +
                                   ")\r\n\tby relayguard-relayd with " + (lmtp ? "LMTP" : "ESMTP") + "; " +
                                   rfc5322_date() + "\r\n";
            std::size_t nrcpt = envelope->recipients.size();
            std::string from = envelope->sender;
            envelope->content = received + content;
            auto id = enqueue_(std::move(*envelope));
            if (!id) {
                spdlog::error("intake: could not queue a message from <{}>: {}", from, id.error());
                for (std::size_t i = 0; i < (lmtp ? nrcpt : 1); ++i) say(fd, "451 4.3.0 Queue write failed; try again later");
            } else {
                spdlog::info("{}: queued from=<{}> nrcpt={} size={} client={}", *id, from, nrcpt, content.size(), peer);
                for (std::size_t i = 0; i < (lmtp ? nrcpt : 1); ++i) say(fd, "250 2.0.0 Ok: queued as " + *id);
            }
            reset();
        } else if (verb == "RSET") {
            reset();
            say(fd, "250 2.0.0 Ok");
        } else if (verb == "NOOP") {
            say(fd, "250 2.0.0 Ok");
        } else if (verb == "QUIT") {
            say(fd, "221 2.0.0 Bye");
            return;
        } else {
            say(fd, "502 5.5.2 Command not recognized");
        }
    }
}

}  // namespace relayguard
