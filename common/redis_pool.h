// A bounded set of connections to one Redis server, shared by the daemon's
// worker threads. Waiting for a free connection, connecting and a failed
// server's back-off all count against the caller's deadline, so a caller never
// waits past it; after a failure the server is retried no sooner than the
// back-off allows (50 ms, doubling to 1 s), so a dead Redis costs an SMTP
// stage microseconds, not a connect timeout each time.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>

#include "common/redis_connection.h"

namespace relayguard {

struct RedisCredentials {
    std::string username;
    std::string password;
};

class RedisPool {
public:
    class Lease {
    public:
        Lease(Lease&& o) noexcept;
        Lease& operator=(Lease&&) = delete;
        ~Lease();
        RedisConnection& operator*() { return *conn_; }
        RedisConnection* operator->() { return &*conn_; }

    private:
        friend class RedisPool;
        Lease(RedisPool* pool, RedisConnection conn, std::uint64_t generation);
        RedisPool* pool_;
        std::optional<RedisConnection> conn_;
        std::uint64_t generation_;
    };

    RedisPool(RedisEndpoint where, std::size_t size, std::chrono::milliseconds connect_timeout, RedisCredentials credentials);
    RedisPool(const RedisPool&) = delete;
    RedisPool& operator=(const RedisPool&) = delete;

    Result<Lease> acquire(SteadyTime deadline);
    // After a failure the idle connections are suspect too (a restarted
    // server closed them all): drop them, and those out on lease on return.
    void discard_all();
    const RedisEndpoint& endpoint() const { return where_; }

private:
    void give_back(std::optional<RedisConnection>& conn, std::uint64_t generation);

    const RedisEndpoint where_;
    const std::size_t size_;
    const std::chrono::milliseconds connect_timeout_;
    const RedisCredentials credentials_;

    std::mutex mutex_;
    std::condition_variable freed_;
    std::deque<RedisConnection> idle_;
    std::size_t open_ = 0;  // idle, on lease, or being connected
    std::uint64_t generation_ = 0;
    SteadyTime retry_at_{};
    std::chrono::milliseconds backoff_;
    std::string last_error_;
};

}  // namespace relayguard
