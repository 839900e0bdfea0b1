// The admin socket's loop; see the header.
#include "common/admin_socket.h"

#include <poll.h>
#include <sys/socket.h>

#include <optional>

namespace relayguard {

namespace {

constexpr std::size_t max_request = 1024;
constexpr int io_timeout_ms = 2000;

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
        auto line = read_line(conn.get());
        std::string reply = line ? handler_(*line) : unreadable_;
        reply += "\n";
        ::send(conn.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    }
}

}  // namespace relayguard
