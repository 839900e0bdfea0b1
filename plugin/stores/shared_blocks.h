// Client blocks (directory harvest, failed logins) as this node knows them,
// so that RCPT does not wait for Redis to learn whether a client is blocked.
// A node that sets or lifts a block publishes it on a Redis channel from the
// same script; every node subscribes and keeps what it hears, with what its
// own scripts answered. The message names no kind (nodes of an earlier
// release read it as before), so the first lookup of a block heard there
// asks Redis for its kind, once.
//
// Pub/sub rather than server-assisted client-side caching (CLIENT TRACKING):
// tracking only announces that a key changed, so each node would still have
// to ask for the new value, at the next RCPT, and in BCAST mode on the
// counters' prefix it would announce every message counted too. A published
// block carries its end; on a Cluster one PUBLISH reaches every node of it,
// so one subscription per relayguard node is enough.
//
// While the subscription is down (Redis away, a failover) the list says it
// is not live, and the store asks Redis at each RCPT as before. After it is
// back, the blocks known are checked again once, since a lift may have been
// missed meanwhile.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/redis/redis_client.h"
#include "common/base/clock.h"
#include "common/base/result.h"
#include "policy/counter_store.h"

namespace relayguard {

class SharedBlocks {
public:
    // Reads one client's block from Redis: used to check the known blocks
    // again after the subscription was lost; a failure when Redis did not answer.
    using Fetch = std::function<Lookup<ClientBlock>(const std::string& client)>;

    // Starts the subscriber thread on `channel`.
    SharedBlocks(RedisClient& redis, std::string channel, Fetch fetch);
    ~SharedBlocks();
    SharedBlocks(const SharedBlocks&) = delete;
    SharedBlocks& operator=(const SharedBlocks&) = delete;

    // What this node learnt itself, from a script's answer.
    void note(const std::string& client, std::optional<ClientBlock> block);
    // The client's block, if the list is live; a failure when it is not,
    // or when the block was heard on the channel and its kind is not yet
    // known (ask Redis, and note() the answer).
    Lookup<ClientBlock> lookup(const std::string& client, TimePoint now);
    bool live() const { return live_; }
    const std::string& channel() const { return channel_; }
    // The message a script publishes: "<until ms> <client>"; 0 lifts a
    // block. It carries no kind, so that nodes of an earlier release read
    // it as before; the kind is asked once, at the block's first lookup.
    static std::string message(const std::string& client, long long until_ms);

    // At most this many blocks are kept; past it the soonest to end go first.
    static constexpr std::size_t max_blocks = 100000;

private:
    void run();
    // One subscription, until it fails or the list stops; false when the
    // server would not take it.
    bool subscribed(RedisConnection& conn);
    void apply(const std::string& payload);
    void remember(const std::string& client, std::optional<ClientBlock> block, bool kind_known);
    void recheck();

    RedisClient& redis_;
    const std::string channel_;
    const Fetch fetch_;
    std::atomic<bool> live_{false};
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    struct Known {
        ClientBlock block;
        bool kind_known = true;
    };
    std::map<std::string, Known> blocks_;  // client -> end and kind
    std::mutex stop_mutex_;
    std::condition_variable stop_;
    std::thread subscriber_;
};

}  // namespace relayguard
