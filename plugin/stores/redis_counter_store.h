// The counter store of a cluster: every counter of the engine in Redis, so
// all MTA nodes share one limit. Each engine call that decides is one
// script, one round trip. Connections and messages in flight (reserved at
// MAIL, see counter_store.h) are held on leases that this node refreshes
// while they are open, so a node that dies stops counting them within one
// lease.
//
// Ending something waits for nothing: a connection's close, a message's
// commit at end of data and a reservation's release are queued, and a
// background thread sends the queued writes together, within about 5 ms, and
// again every 200 ms while Redis fails (a failover must not lose them). The
// next connection or MAIL of the same client on this node takes that
// client's queued writes along in its own script, so this node never counts
// a slot it has given back; other nodes see it free once the background send
// is done. Until then a slot counts as taken, never as free: a limit may
// refuse a moment too early across nodes, never admit one too many.
//
// Blocks (harvest, brute force) reach RCPT without a round trip: see
// shared_blocks.h.
#pragma once

#include <condition_variable>
#include <map>
#include <set>
#include <thread>

#include "common/redis/redis_client.h"
#include "common/base/clock.h"
#include "common/base/result.h"
#include "policy/counter_store.h"
#include "policy/pop_window_store.h"
#include "plugin/stores/shared_blocks.h"

namespace relayguard {

class RedisCounterStore final : public CounterStore {
public:
    // While Redis does not answer, ended connections and messages wait in a
    // queue; past this many clients, further ones are dropped (see enqueue).
    static constexpr std::size_t default_max_queued_clients = 100'000;

    // Starts the thread that refreshes connection leases every lease/3.
    RedisCounterStore(RedisClient& redis, std::string key_prefix, Duration connection_lease, const Clock& clock,
                      std::size_t max_queued_clients = default_max_queued_clients);
    ~RedisCounterStore() override;

    std::optional<ConnectionOutcome> open_connection(const std::string& client, const std::string& connection_id,
                                                     std::uint32_t limit, TimePoint now) override;
    void close_connection(const std::string& client, const std::string& connection_id) override;
    std::optional<RateOutcome> message_rate(const std::string& client, Duration window, std::uint32_t limit,
                                            bool record, TimePoint now) override;
    std::optional<RateOutcome> record_message(const std::string& client, Duration window, std::uint32_t limit,
                                              TimePoint now) override;
    std::optional<RateOutcome> reserve_message(const std::string& client, const std::string& reservation,
                                               Duration window, std::uint32_t limit, TimePoint now) override;
    void commit_message(const std::string& client, const std::string& reservation, Duration window,
                        std::uint32_t limit, TimePoint now) override;
    void release_message(const std::string& client, const std::string& reservation) override;
    std::optional<GuessOutcome> record_guess(GuessKind kind, const std::string& client, const std::string& guess,
                                             Duration window, std::uint32_t threshold, Duration block_for,
                                             TimePoint now) override;
    Lookup<ClientBlock> block(const std::string& client, TimePoint now) override;
    bool unblock(const std::string& client) override;
    void forget_messages(const std::string& client) override;
    std::optional<AccountOutcome> record_account_failure(const std::string& user, const std::string& network,
                                                        Duration window, std::uint32_t max_kept,
                                                        TimePoint now) override;
    bool mark_failed_auth(const std::string& address, TimePoint until, TimePoint now) override;
    Lookup<TimePoint> failed_auth_until(const std::string& address, TimePoint now) override;
    std::optional<ClientCounters> inspect(const std::string& client, const CounterWindows& windows,
                                          TimePoint now) override;

    // Whether RCPT learns blocks without asking Redis (shared_blocks.h).
    bool blocks_live() const { return blocks_.live(); }

    // Renews the lease of every connection and message in flight this node
    // holds; answers how many leases could not be renewed. Run by the
    // background thread.
    std::size_t refresh_leases();
    // Sends the queued writes; answers how many clients' writes could not be
    // sent (kept for the next try; meanwhile leases, no longer renewed, end
    // those slots). Run by the background thread.
    std::size_t send_queued();
    // How many clients have writes not yet sent (queued, or in a send).
    std::size_t queued_clients();

private:
    // What this node has ended for one client and not yet written.
    struct QueuedWrites {
        std::vector<std::string> closed;    // connection members
        std::vector<std::string> released;  // reservation members
        struct Commit {
            std::string in_flight;  // the reservation's member
            TimePoint at;           // end of data: the time the message counts from
        };
        std::vector<Commit> committed;
        Duration window{};  // of the message rate, for a commit's expiry
        bool empty() const { return closed.empty() && released.empty() && committed.empty(); }
        void merge(QueuedWrites&& other);
    };
    static bool forget(std::map<std::string, std::set<std::string>>& held, const std::string& client,
                       const std::string& member);
    // Takes the client's queued writes out of the queue.
    QueuedWrites take_queued(const std::string& client);
    // Puts writes back in the queue after a failed send; `ends_send` when
    // they are the background sender's batch.
    void requeue(std::map<std::string, QueuedWrites> writes, bool ends_send = false);
    // Whether the queue may take writes of `client` (see enqueue's bound); under held_mutex_.
    bool room_for_locked(const std::string& client);
    // Queues a write and wakes the sender.
    template <class Change>
    void enqueue(const std::string& client, Change change);
    std::vector<std::vector<std::string>> commands_for(const std::string& client, const QueuedWrites& w) const;
    std::string key(const std::string& client, const char* kind) const;
    std::string member(const std::string& id) const;
    std::string in_flight_member(const std::string& reservation) const;
    static std::string counted_member(const std::string& in_flight);
    // GET of the client's block, for RCPT while the shared list is not live.
    Lookup<ClientBlock> fetch_block(const std::string& client, TimePoint now);
    std::optional<RateOutcome> rate(const std::string& client, const std::string& member, Duration window,
                                    std::uint32_t limit, const char* mode, TimePoint now);
    // Renews the leases in `held` on the client's `kind` key; `leases` tells
    // the script how they are scored ("connections", "in-flight").
    std::size_t refresh(const std::map<std::string, std::set<std::string>>& held, const char* kind, const char* leases,
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
    std::map<std::string, std::set<std::string>> in_flight_;  // client -> members of our reservations
    std::map<std::string, QueuedWrites> queued_;  // client -> what was ended, not yet sent
    const std::size_t max_queued_clients_;
    std::size_t sending_clients_ = 0;  // taken out of queued_ by a send not yet ended
    bool queue_full_warned_ = false;  // once per outage
    bool stopping_ = false;
    std::condition_variable wake_;  // writes queued, or stopping
    std::thread refresher_;
    SharedBlocks blocks_;  // last: its thread calls fetch_block()
};

// POP-before-SMTP windows in Redis, so a login seen by one node opens relay
// on all of them.
class RedisPopWindowStore final : public PopWindowStore {
public:
    RedisPopWindowStore(RedisClient& redis, std::string key_prefix) : redis_(redis), prefix_(std::move(key_prefix)) {}
    Lookup<PopWindow> find(const std::string& client, TimePoint now) override;
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
