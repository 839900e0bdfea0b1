// The admin socket's loop; see the header.
#include "common/daemon/admin_socket.h"

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <stdexcept>

#include "common/base/system_clock.h"

namespace relayguard {

namespace {

constexpr std::size_t max_request = 1024;
constexpr int io_timeout_ms = 2000;

// Reads one line (up to max_request bytes) within the timeout, counted for
// the whole request: a client trickling bytes cannot hold the socket.
std::optional<std::string> read_line(int fd) {
    std::string line;
    char buf[256];
    auto deadline = SystemClock::monotonic() + std::chrono::milliseconds(io_timeout_ms);
    while (line.size() <= max_request) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SystemClock::monotonic());
        pollfd p{fd, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return line.empty() ? std::nullopt : std::optional<std::string>(line);
        line.append(buf, static_cast<std::size_t>(n));
        if (auto nl = line.find('\n'); nl != std::string::npos) return line.substr(0, nl);
    }
    return std::nullopt;
}

}  // namespace

AdminSocket::~AdminSocket() { stop(); }

void AdminSocket::start(UniqueFd listener) {
    listener_ = std::move(listener);
    acceptor_ = std::thread([this] { accept_loop(); });
}

void AdminSocket::stop() {
    stopping_ = true;
    if (acceptor_.joinable()) acceptor_.join();
}

void AdminSocket::accept_loop() {
    while (!stopping_) {
        pollfd p{listener_.get(), POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) continue;
        UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn) continue;
        // A reader that never reads cannot hold the socket either.
        timeval tv{io_timeout_ms / 1000, 0};
        ::setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        auto line = read_line(conn.get());
        std::string reply;
        try {
            reply = line ? handler_(*line) : unreadable_;
        } catch (const std::exception& e) {
            // One bad request never takes the daemon down.
            reply = R"({"ok": false, "error": "internal error"})";
        }
        reply += "\n";
        ::send(conn.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    }
}

}  // namespace relayguard
