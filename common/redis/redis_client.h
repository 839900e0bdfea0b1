// The daemon's way to Redis, whichever way it is deployed: a single server
// (TCP or unix socket), a master found through Sentinel (and found again
// after a failover), or a Cluster (slot map from CLUSTER SLOTS, MOVED and ASK
// followed). Every call has one deadline, connect_timeout + command_timeout
// from its start or the deadline of the SMTP stage it serves
// (common/base/stage_deadline.h), whichever comes first, and answers by then: a
// reply, or why there is none. A call made when its stage has no time left
// fails at once, like any failure (the store's fail mode then decides).
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <shared_mutex>

#include "common/daemon/metrics.h"
#include "common/redis/redis_pool.h"
#include "common/redis/redis_settings.h"

namespace relayguard {

// Why a call failed when its SMTP stage's deadline had already passed.
inline constexpr const char* redis_stage_timeout = "stage timeout";

// A Lua script run by EVALSHA, sent whole (EVAL) only when the server does
// not know it yet (NOSCRIPT): after a restart, a failover, on a new node.
struct RedisScript {
    explicit RedisScript(std::string body);
    std::string body;
    std::string sha1;  // hex
};

class RedisClient {
public:
    explicit RedisClient(const RedisSettings& settings);
    ~RedisClient();
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    // One command, on the node serving `routing_key` (Cluster) or the master.
    // An error reply other than a redirect comes back as a RedisValue.
    Result<RedisValue> command(const std::vector<std::string>& args, std::string_view routing_key);
    // EVALSHA, or EVAL on NOSCRIPT; `keys` must share one hash slot.
    Result<RedisValue> run(const RedisScript& script, const std::vector<std::string>& keys,
                           const std::vector<std::string>& args);

    // Commands whose replies nobody waits for, each with its routing key:
    // one exchange with a single server or Sentinel's master, one command at
    // a time on a Cluster. Answers how many failed.
    std::size_t send_all(const std::vector<std::vector<std::string>>& commands,
                         const std::vector<std::string>& routing_keys);

    // A connection of its own, for SUBSCRIBE: to the master (single,
    // Sentinel), or to any node of a Cluster, which passes every PUBLISH on
    // to all its nodes. Authenticated as the pools are.
    Result<RedisConnection> open_subscriber();

    // "single 127.0.0.1:6379", "sentinel master 'mymaster' via ...", ...
    std::string describe() const;
    bool cluster() const { return settings_.mode == RedisMode::cluster; }
    // Why the last failed call failed (never contains a password).
    std::string last_error() const;
    // Requests sent to a server so far (redirects and retries included), to
    // measure what a decision costs.
    std::uint64_t round_trips() const { return round_trips_; }
    // Calls made while answering an SMTP stage (stage_deadline.h): the
    // ones a client waited for. Background writes are not among them.
    std::uint64_t stage_waits() const { return stage_waits_; }
    // Calls that failed (after redirects and retries), and each call's time.
    std::uint64_t failures() const { return failures_; }
    const LatencyHistogram& latency() const { return latency_; }

private:
    SteadyTime deadline() const;
    Result<std::vector<RedisValue>> on_master(const std::vector<std::vector<std::string>>& commands, SteadyTime deadline);
    Result<RedisValue> on_cluster(const std::vector<std::string>& args, std::string_view routing_key, SteadyTime deadline);

    // Sentinel: the master's pool, rediscovered after a failure.
    Result<std::shared_ptr<RedisPool>> master_pool(SteadyTime deadline);
    Result<RedisEndpoint> ask_sentinels(SteadyTime deadline);
    void master_failed();

    // Cluster.
    std::shared_ptr<RedisPool> pool_for(const RedisEndpoint& where);
    std::shared_ptr<RedisPool> pool_for_locked(const RedisEndpoint& where);
    std::shared_ptr<RedisPool> pool_for_slot(std::uint16_t slot);
    void refresh_slots(SteadyTime deadline);

    std::shared_ptr<RedisPool> make_pool(const RedisEndpoint& where) const;

    // A call that failed: counted, and remembered for last_error().
    void call_failed(const std::string& why);
    void note_failure(const std::string& why);

    RedisSettings settings_;
    std::atomic<std::uint64_t> round_trips_{0};
    std::atomic<std::uint64_t> stage_waits_{0};
    std::atomic<std::uint64_t> failures_{0};
    LatencyHistogram latency_;
    mutable std::mutex error_mutex_;
    std::string last_error_;
    std::vector<RedisEndpoint> servers_;

    std::mutex discovery_mutex_;  // sentinel: one thread asks the sentinels at a time
    std::mutex master_mutex_;
    std::shared_ptr<RedisPool> master_;
    bool master_suspect_ = true;
    SteadyTime next_discovery_{};
    std::string discovery_error_;

    std::shared_mutex topology_mutex_;  // cluster
    std::map<std::string, std::shared_ptr<RedisPool>> pools_;
    std::array<std::shared_ptr<RedisPool>, 16384> slots_;
    std::atomic<bool> slots_stale_{true};
    std::mutex refresh_mutex_;
    SteadyTime next_refresh_{};
};

}  // namespace relayguard
