// The admin socket both daemons listen on (a unix socket, created with a
// tight mode and group): one request line in (at most 1 KiB, within 2 s),
// one reply line out, then the connection closes. Requests are short, so
// they are served one at a time.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "common/base/unique_fd.h"

namespace relayguard {

class AdminSocket {
public:
    using Handler = std::function<std::string(std::string_view request)>;
    // `unreadable` is the reply to a connection that sent no proper line.
    AdminSocket(Handler handler, std::string unreadable)
        : handler_(std::move(handler)), unreadable_(std::move(unreadable)) {}
    ~AdminSocket();
    AdminSocket(const AdminSocket&) = delete;
    AdminSocket& operator=(const AdminSocket&) = delete;

    void start(UniqueFd listener);
    void stop();

private:
    void accept_loop();

    Handler handler_;
    const std::string unreadable_;
    UniqueFd listener_;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
};

}  // namespace relayguard
