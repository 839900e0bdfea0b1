// One hiredis connection, owned: where it goes, how long it may take, and
// replies copied out of hiredis' structures. A connection that failed in the
// middle of a command is marked broken and never reused, because a late reply
// would be read as the answer to the next command. hiredis writes without
// MSG_NOSIGNAL: the daemon blocks SIGPIPE in every thread, so a write to a
// Redis that died fails with EPIPE instead of ending the process.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/base/result.h"

struct redisContext;

namespace relayguard {

// "HOST:PORT" or "unix:/PATH".
struct RedisEndpoint {
    std::string host;
    int port = 0;
    std::string unix_path;

    static std::optional<RedisEndpoint> parse(const std::string& spec);
    std::string to_string() const;
    bool operator==(const RedisEndpoint&) const = default;
};

struct RedisValue {
    enum class Type { nil, integer, string, status, error, array };
    Type type = Type::nil;
    long long integer = 0;
    std::string str;  // string, status and error replies
    std::vector<RedisValue> elements;

    bool is_error() const { return type == Type::error; }
    // The error's first word: "MOVED", "NOSCRIPT", "READONLY", ...
    std::string error_code() const;
};

// The error of a command sent whose reply did not come in time: it may have
// run, so it is not retried.
inline constexpr const char* redis_no_reply = "no reply within the command timeout";


class RedisConnection {
public:
    // Connects within `timeout`, then authenticates: AUTH USER PASSWORD with
    // an ACL user, AUTH PASSWORD without one, nothing when both are empty.
    static Result<RedisConnection> open(const RedisEndpoint& where, std::chrono::milliseconds timeout,
                                        const std::string& username, const std::string& password);

    RedisConnection(RedisConnection&&) noexcept;
    RedisConnection& operator=(RedisConnection&&) noexcept;
    ~RedisConnection();

    // Sends every command, then reads every reply, all before `deadline`.
    // An error reply is a reply; only a failed or late exchange is an error.
    Result<std::vector<RedisValue>> pipeline(const std::vector<std::vector<std::string>>& commands, SteadyTime deadline);
    Result<RedisValue> call(const std::vector<std::string>& command, SteadyTime deadline);
    // For a subscribed connection: the next message the server pushed, or
    // nothing when none came within `wait` (the connection stays usable).
    Result<std::optional<RedisValue>> next_push(std::chrono::milliseconds wait);

    bool broken() const { return broken_; }
    const RedisEndpoint& endpoint() const { return where_; }

private:
    struct FreeContext {
        void operator()(redisContext* c) const;
    };
    RedisConnection(RedisEndpoint where, redisContext* context);

    RedisEndpoint where_;
    std::unique_ptr<redisContext, FreeContext> context_;
    bool broken_ = false;
    // The socket timeout last set, so that a call whose deadline leaves the
    // same time (to 5 ms, rounded down) spends no syscalls resetting it.
    std::chrono::milliseconds timeout_set_{-1};
};

}  // namespace relayguard
