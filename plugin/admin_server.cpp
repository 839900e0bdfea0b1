// The admin socket; see the header.
#include "plugin/admin_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <sstream>

#include "common/logging.h"
#include "conf/units.h"

namespace relayguard {

namespace {

constexpr std::size_t max_request = 1024;
constexpr int io_timeout_ms = 2000;

std::vector<std::string> words_of(std::string_view line) {
    std::vector<std::string> out;
    std::istringstream in{std::string(line)};
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

bool printable(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x21 || c == 0x7f) return false;
    }
    return true;
}

std::string iso_time(TimePoint t) {
    std::time_t secs = std::chrono::system_clock::to_time_t(std::chrono::system_clock::time_point(t));
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// Reads one line (up to max_request bytes) within the timeout.
std::optional<std::string> read_line(int fd) {
    std::string line;
    char buf[256];
    while (line.size() <= max_request) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, io_timeout_ms) <= 0) return std::nullopt;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return line.empty() ? std::nullopt : std::optional<std::string>(line);
        line.append(buf, static_cast<std::size_t>(n));
        if (auto nl = line.find('\n'); nl != std::string::npos) return line.substr(0, nl);
    }
    return std::nullopt;
}

}  // namespace

void log_pop_window(const IpAddress& client, const std::string& user, TimePoint until, TimePoint now, const char* via) {
    security_log()->info("pop-before-smtp window client={} user=\"{}\" until={} for={}s via={}", client.to_string(),
                         user, iso_time(until),
                         std::chrono::duration_cast<std::chrono::seconds>(until - now).count(), via);
}

AdminServer::~AdminServer() { stop(); }

void AdminServer::start(UniqueFd listener) {
    listener_ = std::move(listener);
    acceptor_ = std::thread([this] { accept_loop(); });
}

void AdminServer::stop() {
    stopping_ = true;
    if (acceptor_.joinable()) acceptor_.join();
}

void AdminServer::accept_loop() {
    // Requests are short and each has a timeout, so one at a time is enough;
    // a login hook that finds the socket busy waits a few milliseconds.
    while (!stopping_) {
        pollfd p{listener_.get(), POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) continue;
        UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn) continue;
        auto line = read_line(conn.get());
        std::string reply = line ? handle(*line) : "error no request line within 2 s, or one over 1024 bytes";
        reply += "\n";
        ::send(conn.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    }
}

std::string AdminServer::handle(std::string_view request) {
    if (!request.empty() && request.back() == '\r') request.remove_suffix(1);
    auto words = words_of(request);
    if (words.empty()) return "error empty request";
    if (words[0] == "ping" && words.size() == 1) return "ok relayguard is running";
    if (words[0] == "pop") return pop_command(words);
    if (words[0] == "reload" && words.size() == 1) {
        std::string errors = reload_ ? reload_() : "reload is not available";
        return errors.empty() ? "ok configuration reloaded" : "error " + errors;
    }
    return "error unknown command '" + words[0] + "'; commands: ping, pop grant, pop show, reload";
}

std::string AdminServer::pop_command(const std::vector<std::string>& words) {
    if (words.size() < 3 || (words[1] != "grant" && words[1] != "show")) {
        return "error usage: pop grant ADDR [user=NAME] [for=DURATION] | pop show ADDR";
    }
    auto client = IpAddress::parse(words[2]);
    if (!client) return "error '" + words[2] + "' is not an IP address";
    if (!engine_.current()->settings().relay.allow_pop_before_smtp) {
        return "error relay.allow_pop_before_smtp is false: a window would open nothing";
    }
    TimePoint now = engine_.current()->now();
    if (words[1] == "show") {
        auto window = engine_.current()->pop_window(*client);
        if (!window) return "error the window store cannot be reached";
        if (!*window) return "ok no window for " + client->to_string();
        return "ok window for " + client->to_string() + " until " + iso_time((*window)->until) + " user=\"" +
               (*window)->user + "\"";
    }
    std::string user;
    std::optional<Duration> length;
    for (std::size_t i = 3; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w.rfind("user=", 0) == 0 && printable(w.substr(5)) && w.size() <= 5 + 256) {
            user = w.substr(5);
        } else if (w.rfind("for=", 0) == 0) {
            auto d = parse_duration(w.substr(4));
            if (!d || *d <= Duration::zero()) return "error for=" + w.substr(4) + " is not a duration such as 30m";
            length = *d;
        } else {
            return "error unexpected '" + w + "'";
        }
    }
    auto until = engine_.current()->open_pop_window(*client, user, length);
    if (!until) return "error the window store cannot be reached";
    log_pop_window(*client, user, *until, now, "admin");
    return "ok window for " + client->to_string() + " until " + iso_time(*until);
}

}  // namespace relayguard
