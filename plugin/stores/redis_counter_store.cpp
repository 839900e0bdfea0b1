// Counters in Redis; see the header and redis_scripts.h.
#include "plugin/stores/redis_counter_store.h"

#include <algorithm>

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <random>
#include <utility>

#include "common/base/system_clock.h"
#include "plugin/stores/redis_scripts.h"
#include "plugin/stores/redis_time.h"

namespace relayguard {

namespace {

const RedisScript message_rate_script(redis_scripts::message_rate);
const RedisScript open_connection_script(redis_scripts::open_connection);
const RedisScript refresh_script(redis_scripts::refresh_connections);
const RedisScript guess_script(redis_scripts::record_guess);
const RedisScript account_failure_script(redis_scripts::account_networks);
const RedisScript unblock_script(redis_scripts::unblock);
const RedisScript grant_pop_script(redis_scripts::grant_pop_window);
const RedisScript inspect_script(redis_scripts::inspect);

using redis_time::ms;

std::string make_node_id() {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    std::random_device rd;
    char tail[16];
    std::snprintf(tail, sizeof tail, "%08x", rd());
    return std::string(host) + ":" + std::to_string(getpid()) + ":" + tail;
}

// The integers of a script's array reply, or nothing for anything else
// (an error reply, a script bug): the caller then applies the fail mode.
std::optional<std::vector<long long>> integers(const Result<RedisValue>& reply, std::size_t count) {
    if (!reply || reply->type != RedisValue::Type::array || reply->elements.size() != count) return std::nullopt;
    std::vector<long long> out;
    for (const auto& e : reply->elements) {
        if (e.type != RedisValue::Type::integer) return std::nullopt;
        out.push_back(e.integer);
    }
    return out;
}

constexpr std::chrono::milliseconds close_gather{5};
constexpr std::chrono::milliseconds close_retry{200};

std::optional<TimePoint> time_or_none(long long v) {
    if (v <= 0) return std::nullopt;
    return TimePoint(Duration(v));
}

GuessKind kind_of(long long v) { return v == 1 ? GuessKind::failed_login : GuessKind::unknown_recipient; }

std::optional<ClientBlock> block_or_none(long long until, long long kind) {
    auto t = time_or_none(until);
    if (!t) return std::nullopt;
    return ClientBlock{*t, kind_of(kind)};
}

// The key each kind of guess is counted under.
const char* guess_key(GuessKind kind) { return kind == GuessKind::failed_login ? "logins" : "unknown"; }

}  // namespace

RedisCounterStore::RedisCounterStore(RedisClient& redis, std::string key_prefix, Duration connection_lease,
                                     const Clock& clock, std::size_t max_queued_clients)
    : redis_(redis),
      prefix_(std::move(key_prefix)),
      lease_(connection_lease),
      clock_(clock),
      node_id_(make_node_id()),
      max_queued_clients_(max_queued_clients),
      blocks_(redis, prefix_ + "blocks", [this](const std::string& client) { return fetch_block(client, clock_.now()); }) {
    refresher_ = std::thread([this] { refresher(); });
}

RedisCounterStore::~RedisCounterStore() {
    {
        std::lock_guard lock(held_mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    refresher_.join();
    send_queued();  // the last ones, so a clean stop gives every slot back
}

std::string RedisCounterStore::key(const std::string& client, const char* kind) const {
    return prefix_ + "{" + client + "}:" + kind;
}

std::string RedisCounterStore::member(const std::string& id) const { return node_id_ + "/" + id; }

// A message in flight and the message it becomes share the messages key
// (see redis_scripts.h); the "p/" prefix tells them apart.
std::string RedisCounterStore::in_flight_member(const std::string& reservation) const {
    return "p/" + member(reservation);
}

std::string RedisCounterStore::counted_member(const std::string& in_flight) { return in_flight.substr(2); }

void RedisCounterStore::QueuedWrites::merge(QueuedWrites&& other) {
    auto append = [](auto& to, auto& from) {
        to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
    };
    append(closed, other.closed);
    append(released, other.released);
    append(committed, other.committed);
    window = std::max(window, other.window);
}

RedisCounterStore::QueuedWrites RedisCounterStore::take_queued(const std::string& client) {
    std::lock_guard lock(held_mutex_);
    auto it = queued_.find(client);
    if (it == queued_.end()) return {};
    QueuedWrites w = std::move(it->second);
    queued_.erase(it);
    return w;
}

void RedisCounterStore::requeue(std::map<std::string, QueuedWrites> writes, bool ends_send) {
    std::lock_guard lock(held_mutex_);
    if (ends_send) sending_clients_ = 0;
    for (auto& [client, w] : writes) {
        if (!w.empty() && room_for_locked(client)) queued_[client].merge(std::move(w));
    }
}

// A long Redis outage under traffic must not grow the queue without end:
// past max_queued_clients (a send in progress included) a new client's
// writes are dropped. Nothing is held for ever by that: a dropped close or
// release ends with its lease (the node no longer renews it); a dropped
// commit goes uncounted.
bool RedisCounterStore::room_for_locked(const std::string& client) {
    if (queued_.contains(client) || queued_.size() + sending_clients_ < max_queued_clients_) return true;
    if (!std::exchange(queue_full_warned_, true)) {
        spdlog::warn("redis: {} clients' closes and commits wait for Redis; further ones are dropped until "
                     "it answers (their slots end with the lease, a dropped commit is not counted)",
                     max_queued_clients_);
    }
    return false;
}

std::size_t RedisCounterStore::queued_clients() {
    std::lock_guard lock(held_mutex_);
    return queued_.size() + sending_clients_;
}

// Removes `member` from the client's set in `held`, and the set once empty;
// whether it was there.
bool RedisCounterStore::forget(std::map<std::string, std::set<std::string>>& held, const std::string& client,
                               const std::string& member) {
    auto it = held.find(client);
    if (it == held.end() || it->second.erase(member) == 0) return false;
    if (it->second.empty()) held.erase(it);
    return true;
}

template <class Change>
void RedisCounterStore::enqueue(const std::string& client, Change change) {
    bool first = false;
    {
        std::lock_guard lock(held_mutex_);
        first = queued_.empty();
        if (!room_for_locked(client)) return;
        auto [it, made] = queued_.try_emplace(client);
        if (!change(it->second)) {
            if (made) queued_.erase(it);
            return;
        }
    }
    // Only the first write wakes the sender, which then gathers for a few
    // milliseconds: a wake-up per end of data would cost a context switch
    // per message, as much as the round trip the queue saves.
    if (first) wake_.notify_one();
}

std::optional<ConnectionOutcome> RedisCounterStore::open_connection(const std::string& client,
                                                                    const std::string& connection_id,
                                                                    std::uint32_t limit, TimePoint now) {
    std::string m = member(connection_id);
    std::vector<std::string> args{ms(now), ms(lease_), std::to_string(limit), m};
    // This client's closes not yet sent go first, in the same script.
    QueuedWrites queued = take_queued(client);
    args.insert(args.end(), queued.closed.begin(), queued.closed.end());
    auto r = integers(redis_.run(open_connection_script, {key(client, "conn")}, args), 2);
    if (r) queued.closed.clear();
    // Whatever the script did not write goes back to the queue.
    if (!queued.empty()) requeue({{client, std::move(queued)}});
    if (!r) return std::nullopt;
    ConnectionOutcome out;
    out.admitted = (*r)[0] == 1;
    out.held = static_cast<std::uint32_t>((*r)[1]);
    // The slot is taken: a block read that fails now must not leave it
    // unowned. The block is asked for again at RCPT.
    if (auto blocked = block(client, now); blocked && *blocked) {
        out.blocked_until = (*blocked)->until;
        out.blocked_for = (*blocked)->kind;
    } else if (!blocked) {
        spdlog::debug("store: block of {} not read at connect ({}); RCPT asks again", client, blocked.error());
    }
    if (out.admitted) {
        std::lock_guard lock(held_mutex_);
        held_[client].insert(m);
    }
    return out;
}

void RedisCounterStore::close_connection(const std::string& client, const std::string& connection_id) {
    std::string m = member(connection_id);
    enqueue(client, [&](QueuedWrites& w) {
        if (!forget(held_, client, m)) return false;
        w.closed.push_back(std::move(m));
        return true;
    });
}

std::vector<std::vector<std::string>> RedisCounterStore::commands_for(const std::string& client,
                                                                      const QueuedWrites& w) const {
    std::vector<std::vector<std::string>> out;
    if (!w.closed.empty()) {
        std::vector<std::string> cmd{"ZREM", key(client, "conn")};
        cmd.insert(cmd.end(), w.closed.begin(), w.closed.end());
        out.push_back(std::move(cmd));
    }
    if (!w.committed.empty()) {
        // Counted first, then no longer in flight: between the two a message
        // counts twice for a moment, never not at all.
        // The next script of the client trims what the limit no longer needs.
        std::vector<std::string> add{"ZADD", key(client, "msg")};
        std::vector<std::string> rem{"ZREM", key(client, "msg")};
        for (const auto& c : w.committed) {
            add.push_back(ms(c.at));
            add.push_back(counted_member(c.in_flight));
            rem.push_back(c.in_flight);
        }
        out.push_back(std::move(add));
        out.push_back(std::move(rem));
        out.push_back({"PEXPIRE", key(client, "msg"), ms(std::max(w.window, lease_))});
    }
    if (!w.released.empty()) {
        std::vector<std::string> cmd{"ZREM", key(client, "msg")};
        cmd.insert(cmd.end(), w.released.begin(), w.released.end());
        out.push_back(std::move(cmd));
    }
    return out;
}

std::size_t RedisCounterStore::send_queued() {
    std::map<std::string, QueuedWrites> queued;
    {
        std::lock_guard lock(held_mutex_);
        queued.swap(queued_);
        sending_clients_ = queued.size();
    }
    std::vector<std::vector<std::string>> commands;
    std::vector<std::string> routes;
    for (const auto& [client, w] : queued) {
        for (auto& cmd : commands_for(client, w)) {
            routes.push_back(cmd[1]);
            commands.push_back(std::move(cmd));
        }
    }
    std::size_t failed = commands.empty() ? 0 : redis_.send_all(commands, routes);
    // Kept for the next try (each write may be sent twice harmlessly): a
    // close lost while Redis fails over would hold its slot for a lease.
    if (failed == 0) {
        std::lock_guard lock(held_mutex_);
        sending_clients_ = 0;
        queue_full_warned_ = false;
        return 0;
    }
    std::size_t clients = queued.size();
    requeue(std::move(queued), true);
    return clients;
}

std::optional<RateOutcome> RedisCounterStore::rate(const std::string& client, const std::string& m, Duration window,
                                                   std::uint32_t limit, const char* mode, TimePoint now) {
    QueuedWrites queued = take_queued(client);
    std::vector<std::string> args{ms(now), ms(window), std::to_string(limit), mode, m, ms(now + lease_),
                                  std::to_string(queued.released.size())};
    args.insert(args.end(), queued.released.begin(), queued.released.end());
    for (const auto& c : queued.committed) {
        args.push_back(c.in_flight);
        args.push_back(counted_member(c.in_flight));
        args.push_back(ms(c.at));
    }
    auto r = integers(redis_.run(message_rate_script, {key(client, "msg")}, args), 2);
    if (r) {
        queued.released.clear();
        queued.committed.clear();
    }
    if (!queued.empty()) requeue({{client, std::move(queued)}});
    if (!r) return std::nullopt;
    return RateOutcome{static_cast<std::uint32_t>((*r)[0]), (*r)[1] == 1};
}

std::optional<RateOutcome> RedisCounterStore::message_rate(const std::string& client, Duration window,
                                                           std::uint32_t limit, bool record, TimePoint now) {
    return rate(client, member(std::to_string(++sequence_)), window, limit, record ? "record-below-limit" : "check",
                now);
}

std::optional<RateOutcome> RedisCounterStore::record_message(const std::string& client, Duration window,
                                                             std::uint32_t limit, TimePoint now) {
    return rate(client, member(std::to_string(++sequence_)), window, limit, "record", now);
}

std::optional<RateOutcome> RedisCounterStore::reserve_message(const std::string& client,
                                                              const std::string& reservation, Duration window,
                                                              std::uint32_t limit, TimePoint now) {
    std::string m = in_flight_member(reservation);
    auto r = rate(client, m, window, limit, "reserve", now);
    if (r && r->recorded) {
        std::lock_guard lock(held_mutex_);
        in_flight_[client].insert(std::move(m));
    }
    return r;
}

void RedisCounterStore::commit_message(const std::string& client, const std::string& reservation, Duration window,
                                       std::uint32_t /*limit: the client's next script trims*/, TimePoint now) {
    // An unnamed commit counts a message that held no reservation.
    std::string m = in_flight_member(reservation.empty() ? std::to_string(++sequence_) : reservation);
    enqueue(client, [&](QueuedWrites& w) {
        forget(in_flight_, client, m);
        w.committed.push_back({std::move(m), now});
        w.window = std::max(w.window, window);
        return true;
    });
}

void RedisCounterStore::release_message(const std::string& client, const std::string& reservation) {
    std::string m = in_flight_member(reservation);
    enqueue(client, [&](QueuedWrites& w) {
        if (!forget(in_flight_, client, m)) return false;
        w.released.push_back(std::move(m));
        return true;
    });
}

std::optional<GuessOutcome> RedisCounterStore::record_guess(GuessKind kind, const std::string& client,
                                                            const std::string& guess, Duration window,
                                                            std::uint32_t threshold, Duration block_for,
                                                            TimePoint now) {
    auto r = integers(redis_.run(guess_script, {key(client, guess_key(kind)), key(client, "block"), key(client, "blockkind")},
                                 {ms(now), ms(window), std::to_string(threshold), ms(block_for), guess,
                                  blocks_.channel(), client, kind == GuessKind::failed_login ? "1" : "0"}),
                      3);
    if (!r) return std::nullopt;
    GuessOutcome out{static_cast<std::uint32_t>((*r)[0]), time_or_none((*r)[1])};
    blocks_.note(client, block_or_none((*r)[1], (*r)[2]));
    return out;
}

Lookup<ClientBlock> RedisCounterStore::block(const std::string& client, TimePoint now) {
    if (auto known = blocks_.lookup(client, now)) return known;
    auto fetched = fetch_block(client, now);
    // A block heard on the channel gets its kind here, once.
    if (fetched && blocks_.live()) blocks_.note(client, *fetched);
    return fetched;
}

// Two single-key reads, the second only for a client that is blocked: on
// a Cluster slot being migrated a read of several keys fails (TRYAGAIN)
// until they have all moved, and nearly every client is not blocked.
Lookup<ClientBlock> RedisCounterStore::fetch_block(const std::string& client, TimePoint now) {
    auto reply = redis_.command({"GET", key(client, "block")}, key(client, "block"));
    if (!reply) return Lookup<ClientBlock>::failure(reply.error());
    if (reply->type != RedisValue::Type::string) return std::optional<ClientBlock>{};
    long long until = std::strtoll(reply->str.c_str(), nullptr, 10);
    if (until <= now.time_since_epoch().count()) return std::optional<ClientBlock>{};
    auto kind_reply = redis_.command({"GET", key(client, "blockkind")}, key(client, "blockkind"));
    if (!kind_reply) return Lookup<ClientBlock>::failure(kind_reply.error());
    long long kind = kind_reply->type == RedisValue::Type::string ? std::strtoll(kind_reply->str.c_str(), nullptr, 10) : 0;
    return block_or_none(until, kind);
}

bool RedisCounterStore::unblock(const std::string& client) {
    auto reply = redis_.run(unblock_script,
                            {key(client, "block"), key(client, "unknown"), key(client, "logins"), key(client, "blockkind")},
                            {blocks_.channel(), client});
    if (reply && !reply->is_error()) blocks_.note(client, std::nullopt);
    return reply && reply->type == RedisValue::Type::integer && reply->integer == 1;
}

void RedisCounterStore::forget_messages(const std::string& client) {
    // Only counted messages: slots in flight stay theirs until they end.
    std::string k = key(client, "msg");
    redis_.command({"ZREMRANGEBYSCORE", k, "0", "+inf"}, k);
}

std::optional<AccountOutcome> RedisCounterStore::record_account_failure(const std::string& user,
                                                                       const std::string& network, Duration window,
                                                                       std::uint32_t max_kept, TimePoint now) {
    std::string k = prefix_ + "{" + user + "}:account";
    auto r = integers(redis_.run(account_failure_script, {k}, {ms(now), ms(window), std::to_string(max_kept), network}),
                      2);
    if (!r) return std::nullopt;
    return AccountOutcome{static_cast<std::uint32_t>((*r)[0]), (*r)[1] == 1};
}

bool RedisCounterStore::mark_failed_auth(const std::string& address, TimePoint until, TimePoint now) {
    if (until <= now) return true;
    std::string k = key(address, "authfail");
    auto reply = redis_.command({"SET", k, ms(until), "PX", ms(until - now)}, k);
    return reply && !reply->is_error();
}

Lookup<TimePoint> RedisCounterStore::failed_auth_until(const std::string& address, TimePoint now) {
    std::string k = key(address, "authfail");
    auto reply = redis_.command({"GET", k}, k);
    if (!reply) return Lookup<TimePoint>::failure(reply.error());
    if (reply->type == RedisValue::Type::nil) return std::optional<TimePoint>{};
    if (reply->type != RedisValue::Type::string) return Lookup<TimePoint>::failure("unexpected reply to GET");
    long long until = std::strtoll(reply->str.c_str(), nullptr, 10);
    if (until <= now.time_since_epoch().count()) return std::optional<TimePoint>{};
    return std::optional<TimePoint>{TimePoint(Duration(until))};
}

std::optional<ClientCounters> RedisCounterStore::inspect(const std::string& client, const CounterWindows& windows,
                                                         TimePoint now) {
    auto r = integers(redis_.run(inspect_script,
                                 {key(client, "msg"), key(client, "conn"), key(client, "unknown"), key(client, "block"),
                                  key(client, "logins"), key(client, "blockkind")},
                                 {ms(now), ms(windows.message_rate), ms(windows.unknown_recipients),
                                  ms(windows.failed_logins)}),
                      10);
    if (!r) return std::nullopt;
    ClientCounters out;
    out.messages = static_cast<std::uint32_t>((*r)[0]);
    out.connections = static_cast<std::uint32_t>((*r)[1]);
    out.unknown_recipients = static_cast<std::uint32_t>((*r)[2]);
    out.blocked_until = time_or_none((*r)[3]);
    out.messages_in_flight = static_cast<std::uint32_t>((*r)[4]);
    out.failed_logins = static_cast<std::uint32_t>((*r)[5]);
    out.blocked_for = kind_of((*r)[6]);
    auto when = [](long long at) { return at > 0 ? std::optional<TimePoint>(TimePoint(Duration(at))) : std::nullopt; };
    out.oldest_message = when((*r)[7]);
    out.oldest_unknown_recipient = when((*r)[8]);
    out.oldest_failed_login = when((*r)[9]);
    return out;
}

std::size_t RedisCounterStore::refresh(const std::map<std::string, std::set<std::string>>& held, const char* kind,
                                       const char* leases, TimePoint now) {
    std::size_t failed = 0;
    for (const auto& [client, members] : held) {
        std::vector<std::string> args{ms(now), ms(now + lease_), leases};
        args.insert(args.end(), members.begin(), members.end());
        auto reply = redis_.run(refresh_script, {key(client, kind)}, args);
        if (!reply || reply->is_error()) ++failed;
    }
    return failed;
}

std::size_t RedisCounterStore::refresh_leases() {
    std::map<std::string, std::set<std::string>> connections, in_flight;
    {
        std::lock_guard lock(held_mutex_);
        connections = held_;
        in_flight = in_flight_;
    }
    TimePoint now = clock_.now();
    return refresh(connections, "conn", "connections", now) + refresh(in_flight, "msg", "in-flight", now);
}

void RedisCounterStore::refresher() {
    // A third of the lease: two refreshes can fail before a live connection
    // would drop out of the count.
    auto every = std::max<Duration>(lease_ / 3, std::chrono::milliseconds(100));
    auto next_refresh = SystemClock::monotonic() + every;
    std::chrono::steady_clock::time_point close_retry_at{};  // this thread's alone
    auto closes_due = [&] { return !queued_.empty() && SystemClock::monotonic() >= close_retry_at; };
    std::unique_lock lock(held_mutex_);
    while (!stopping_) {
        // Woken by a close, and at least every close_retry, when a failed
        // send may be due again.
        wake_.wait_until(lock, std::min(next_refresh, SystemClock::monotonic() + close_retry),
                         [&] { return stopping_ || closes_due(); });
        // Closes come in bursts under load: a few milliseconds' wait lets one
        // request carry many of them.
        if (closes_due()) wake_.wait_for(lock, close_gather, [this] { return stopping_; });
        if (stopping_) break;
        bool closes = closes_due();
        bool refresh = SystemClock::monotonic() >= next_refresh;
        lock.unlock();
        if (closes && send_queued() > 0) close_retry_at = SystemClock::monotonic() + close_retry;
        if (refresh) {
            next_refresh = SystemClock::monotonic() + every;
            if (std::size_t failed = refresh_leases(); failed > 0) {
                spdlog::warn("redis: could not renew {} lease(s) of connections or messages in flight; they drop out "
                             "of the shared count after {} ms unless renewed",
                             failed, lease_.count());
            }
        }
        lock.lock();
    }
}

Lookup<PopWindow> RedisPopWindowStore::find(const std::string& client, TimePoint now) {
    auto reply = redis_.command({"HMGET", key(client), "until", "user"}, key(client));
    if (!reply) return Lookup<PopWindow>::failure(reply.error());
    if (reply->type != RedisValue::Type::array || reply->elements.size() != 2) {
        return Lookup<PopWindow>::failure("unexpected reply to HMGET");
    }
    const auto& until = reply->elements[0];
    if (until.type != RedisValue::Type::string) return std::optional<PopWindow>{};
    long long end = std::strtoll(until.str.c_str(), nullptr, 10);
    if (end <= now.time_since_epoch().count()) return std::optional<PopWindow>{};
    return std::optional<PopWindow>{PopWindow{reply->elements[1].str, TimePoint(Duration(end))}};
}

std::optional<PopWindowStore::WindowList> RedisPopWindowStore::list(TimePoint now, std::size_t max) {
    if (redis_.cluster()) return std::nullopt;
    WindowList out;
    std::string cursor = "0";
    std::string head = prefix_ + "pop:{";
    do {
        auto reply = redis_.command({"SCAN", cursor, "MATCH", head + "*", "COUNT", "500"}, "");
        if (!reply || reply->type != RedisValue::Type::array || reply->elements.size() != 2) return std::nullopt;
        cursor = reply->elements[0].str;
        for (const auto& k : reply->elements[1].elements) {
            if (k.str.size() <= head.size() + 1 || out.size() >= max) continue;
            std::string client = k.str.substr(head.size(), k.str.size() - head.size() - 1);
            auto w = find(client, now);
            if (w && *w) out.emplace_back(client, **w);
        }
    } while (cursor != "0" && out.size() < max);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return out;
}

bool RedisPopWindowStore::grant(const std::string& client, const std::string& user, TimePoint until, TimePoint now) {
    auto reply = redis_.run(grant_pop_script, {key(client)}, {ms(until), user, ms(now)});
    return reply && reply->type == RedisValue::Type::integer && reply->integer == 1;
}

}  // namespace relayguard
