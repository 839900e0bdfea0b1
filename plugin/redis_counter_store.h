// The counter store of a cluster: every counter of the engine in Redis, so
// all MTA nodes share one limit. Each engine call is one script, one round
// trip. Connections are held on leases that this node refreshes while they
// are open, so a node that dies stops counting within one lease.
//
// Closing a connection waits for nothing: the close is queued, and a
// background thread sends the queued closes together, within about 5 ms, and
// again every 200 ms while Redis fails (a failover must not keep them).
// The next connection of the same client on this node takes that client's
// queued closes along in its own script, so this node never counts a slot it
// has given back; other nodes see it free once the background send is done.
#pragma once

#include <condition_variable>
#include <map>
#include <set>
#include <thread>

#include "common/redis_client.h"
#include "policy/clock.h"
#include "policy/counter_store.h"
#include "policy/pop_window_store.h"

namespace relayguard {

class RedisCounterStore final : public CounterStore {
public:
    // Starts the thread that refreshes connection leases every lease/3.
    RedisCounterStore(RedisClient& redis, std::string key_prefix, Duration connection_lease, const Clock& clock);
    ~RedisCounterStore() override;

    std::optional<ConnectionOutcome> open_connection(const std::string& client, const std::string& connection_id,
                                                     std::uint32_t limit, TimePoint now) override;
    void close_connection(const std::string& client, const std::string& connection_id) override;
    std::optional<RateOutcome> message_rate(const std::string& client, Duration window, std::uint32_t limit,
                                            bool record, TimePoint now) override;
    std::optional<RateOutcome> record_message(const std::string& client, Duration window, std::uint32_t limit,
                                              TimePoint now) override;
    std::optional<UnknownRecipientOutcome> record_unknown_recipient(const std::string& client,
                                                                    const std::string& recipient, Duration window,
                                                                    std::uint32_t threshold, Duration block_for,
                                                                    TimePoint now) override;
    std::optional<std::optional<TimePoint>> blocked_until(const std::string& client, TimePoint now) override;
    bool unblock(const std::string& client) override;
    std::optional<ClientCounters> inspect(const std::string& client, Duration rate_window, Duration unknown_window,
                                          TimePoint now) override;

    // Renews the lease of every connection this node holds; answers how many
    // clients' leases could not be renewed. Run by the background thread.
    std::size_t refresh_leases();
    // Sends the queued closes; answers how many could not be sent (their
    // leases, no longer renewed, end those slots). Run by the background thread.
    std::size_t send_closes();

private:
    // Puts closes back in the queue after a failed send.
    void requeue_closes(std::map<std::string, std::vector<std::string>> closes);
    std::string key(const std::string& client, const char* kind) const;
    std::string member(const std::string& connection_id) const;
    std::optional<RateOutcome> rate(const std::string& client, Duration window, std::uint32_t limit, const char* mode,
                                    TimePoint now);
    void refresher();

    RedisClient& redis_;
    const std::string prefix_;
    const Duration lease_;
    const Clock& clock_;
    const std::string node_id_;  // this process's name in connection and message members
    std::atomic<std::uint64_t> sequence_{0};

    std::mutex held_mutex_;
    std::map<std::string, std::set<std::string>> held_;  // client -> members of our open connections
    std::map<std::string, std::vector<std::string>> closing_;  // client -> members closed, not yet sent
    bool stopping_ = false;
    std::condition_variable wake_;  // closes queued, or stopping
    std::thread refresher_;
};

// POP-before-SMTP windows in Redis, so a login seen by one node opens relay
// on all of them.
class RedisPopWindowStore final : public PopWindowStore {
public:
    RedisPopWindowStore(RedisClient& redis, std::string key_prefix) : redis_(redis), prefix_(std::move(key_prefix)) {}
    std::optional<std::optional<PopWindow>> find(const std::string& client, TimePoint now) override;
    bool grant(const std::string& client, const std::string& user, TimePoint until, TimePoint now) override;
    // SCAN on the one master; on Cluster the keys are spread over several
    // masters and this answers std::nullopt (not listed).
    std::optional<WindowList> list(TimePoint now, std::size_t max) override;

private:
    std::string key(const std::string& client) const { return prefix_ + "pop:{" + client + "}"; }
    RedisClient& redis_;
    const std::string prefix_;
};

}  // namespace relayguard
