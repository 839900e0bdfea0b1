// A private redis-server for the store tests: started on a free loopback
// port when first needed, stopped when the test process exits. The store
// tests talk to a real Redis because its scripts are the thing under test.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <stdexcept>
#include <string>
#include <thread>

#include "common/redis/redis_connection.h"

namespace relayguard::test {

inline int free_loopback_port() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    close(fd);
    return ntohs(a.sin_port);
}

class RedisServerProcess {
public:
    RedisServerProcess() : port_(free_loopback_port()) {
        // As in the daemon, a write to a Redis that died must fail with
        // EPIPE, not end the process.
        signal(SIGPIPE, SIG_IGN);
        start();
    }
    ~RedisServerProcess() { stop(); }
    RedisServerProcess(const RedisServerProcess&) = delete;
    RedisServerProcess& operator=(const RedisServerProcess&) = delete;

    int port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

    void start() {
        std::string port = std::to_string(port_);
        pid_ = fork();
        if (pid_ == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execl("/usr/bin/redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--daemonize", "no", "--enable-debug-command", "local",
                  static_cast<char*>(nullptr));
            _exit(127);
        }
        for (int i = 0; i < 200; ++i) {
            if (auto c = connect()) {
                if (auto r = c->call({"PING"}, deadline()); r && r->str == "PONG") return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        stop();
        throw std::runtime_error("redis-server did not start on port " + port + " (is the redis-server package installed?)");
    }

    void stop() {
        if (pid_ <= 0) return;
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    // One command on a fresh connection; throws when Redis does not answer.
    RedisValue call(const std::vector<std::string>& args) {
        auto c = connect();
        if (!c) throw std::runtime_error("redis: " + c.error());
        auto r = c->call(args, deadline());
        if (!r) throw std::runtime_error("redis: " + r.error());
        return *r;
    }

private:
    Result<RedisConnection> connect() {
        return RedisConnection::open(*RedisEndpoint::parse(address()), std::chrono::milliseconds(500), "", "");
    }
    static SteadyTime deadline() { return std::chrono::steady_clock::now() + std::chrono::seconds(2); }

    int port_;
    pid_t pid_ = -1;
};

}  // namespace relayguard::test
