// A bounded set of connections to one Redis server, shared by the daemon's
// worker threads. Commands that threads send at the same moment go out
// together: the thread that gets a free connection writes every command
// waiting in the queue in one write and hands each thread its reply. Redis
// then reads, runs and answers a whole batch per wake-up, which is where most
// of its time went when each command came alone.
//
// Waiting in the queue, connecting and a failed server's back-off all count
// against the caller's deadline, so a caller never waits past it; after a
// failure the server is retried no sooner than the back-off allows (50 ms,
// doubling to 1 s), so a dead Redis costs an SMTP stage microseconds, not a
// connect timeout each time.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>

#include "common/redis/redis_connection.h"

namespace relayguard {

struct RedisCredentials {
    std::string username;
    std::string password;
};

// What came back for one caller's commands.
struct RedisExchange {
    // The replies, one per command, in order; empty when `error` is set.
    std::vector<RedisValue> replies;
    std::string error;
    // Whether the commands were written: a failure before that (no
    // connection to be had) left the server untouched.
    bool sent = false;
    bool ok() const { return error.empty(); }
};

class RedisPool {
public:
    // At most this many commands go out in one write.
    static constexpr std::size_t max_batch = 64;

    RedisPool(RedisEndpoint where, std::size_t size, std::chrono::milliseconds connect_timeout, RedisCredentials credentials);
    RedisPool(const RedisPool&) = delete;
    RedisPool& operator=(const RedisPool&) = delete;

    // Sends `commands`, kept together and in order, and waits for their
    // replies. When an exchange fails, every connection of the pool is
    // dropped: a restarted server has closed them all.
    RedisExchange exchange(const std::vector<std::vector<std::string>>& commands, SteadyTime deadline);
    const RedisEndpoint& endpoint() const { return where_; }

private:
    struct Request;
    // With the lock held: whether a queued request could go now.
    bool can_start() const;
    // With the lock held: wakes the oldest queued request if it could go.
    void wake_next();
    // Sends the oldest queued requests (up to max_batch commands, `mine`
    // among them) on `conn`, and wakes each with its replies.
    void send_batch(std::unique_lock<std::mutex>& lock, RedisConnection conn, std::uint64_t generation, Request& mine);

    const RedisEndpoint where_;
    const std::size_t size_;
    const std::chrono::milliseconds connect_timeout_;
    const RedisCredentials credentials_;

    std::mutex mutex_;
    std::deque<Request*> queue_;       // waiting to be sent, oldest first
    std::deque<RedisConnection> idle_;
    std::size_t open_ = 0;  // idle, in use, or being connected
    std::uint64_t generation_ = 0;  // raised when the connections are dropped
    SteadyTime retry_at_{};
    std::chrono::milliseconds backoff_;
    std::string last_error_;
};

}  // namespace relayguard
