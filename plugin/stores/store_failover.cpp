// Fail modes of the shared store; see the header.
#include "plugin/stores/store_failover.h"

#include <spdlog/spdlog.h>

namespace relayguard {

namespace {
constexpr std::chrono::minutes reminder_every{1};
}

StoreHealth::StoreHealth(std::string what, bool fail_open, std::function<std::string()> why, const Clock& clock)
    : what_(std::move(what)), fail_open_(fail_open), why_(std::move(why)), clock_(clock) {}

void StoreHealth::succeeded() {
    if (!degraded_ && ever_succeeded_) return;
    std::lock_guard lock(mutex_);
    if (degraded_) {
        auto lasted = std::chrono::duration_cast<std::chrono::seconds>(clock_.steady_now() - since_);
        spdlog::warn("store: {} reachable again after {} s ({} calls failed); counting in Redis, shared by every node",
                     what_, lasted.count(), failures_);
        degraded_ = false;
        if (listener_) listener_(false, what_, "");
    } else if (!ever_succeeded_) {
        spdlog::info("store: {} answered; counting in Redis, shared by every node", what_);
    }
    ever_succeeded_ = true;
}

void StoreHealth::failed() {
    std::lock_guard lock(mutex_);
    auto now = clock_.steady_now();
    ++failures_;
    const char* mode = fail_open_ ? "store.fail_mode = open: counting on this node alone; the cluster-wide view is lost"
                                  : "store.fail_mode = tempfail: limited SMTP stages get 4xx";
    if (!degraded_) {
        degraded_ = true;
        since_ = now;
        failures_ = 1;
        next_reminder_ = now + reminder_every;
        std::string why = why_();
        spdlog::error("store: {} unreachable ({}); {} until it is back", what_, why, mode);
        if (listener_) listener_(true, what_, why);
    } else if (now >= next_reminder_) {
        next_reminder_ = now + reminder_every;
        auto lasted = std::chrono::duration_cast<std::chrono::seconds>(now - since_);
        spdlog::error("store: {} still unreachable after {} s, {} calls failed ({}); {}", what_, lasted.count(),
                      failures_, why_(), mode);
    }
}

MemoryCounterStore::FullObserver log_memory_store_full(std::string which, bool fail_open) {
    return [which = std::move(which), fail_open](std::size_t held) {
        spdlog::error("store: the {} holds {} clients (store.memory_max_clients), all blocked or holding a connection; "
                      "new clients are {} until one ends (store.fail_mode = \"{}\")",
                      which, held, fail_open ? "not limited" : "answered 4xx", fail_open ? "open" : "tempfail");
    };
}

FailoverCounterStore::FailoverCounterStore(CounterStore& primary, StoreHealth& health, std::size_t fallback_max_clients)
    : primary_(primary),
      health_(health),
      fallback_(fallback_max_clients, log_memory_store_full("local fallback store", true)) {}

template <class Call, class Fallback>
auto FailoverCounterStore::either(Call primary, Fallback fallback) -> decltype(primary()) {
    auto r = primary();
    if (r) {
        health_.succeeded();
        return r;
    }
    health_.failed();
    if (!health_.fail_open()) return r;
    return fallback();
}

std::optional<ConnectionOutcome> FailoverCounterStore::open_connection(const std::string& client,
                                                                       const std::string& connection_id,
                                                                       std::uint32_t limit, TimePoint now) {
    return either([&] { return primary_.open_connection(client, connection_id, limit, now); },
                  [&] { return fallback_.open_connection(client, connection_id, limit, now); });
}

void FailoverCounterStore::close_connection(const std::string& client, const std::string& connection_id) {
    // The slot may have been taken in either store; closing an absent one is a no-op.
    primary_.close_connection(client, connection_id);
    fallback_.close_connection(client, connection_id);
}

std::optional<RateOutcome> FailoverCounterStore::message_rate(const std::string& client, Duration window,
                                                              std::uint32_t limit, bool record, TimePoint now) {
    return either([&] { return primary_.message_rate(client, window, limit, record, now); },
                  [&] { return fallback_.message_rate(client, window, limit, record, now); });
}

std::optional<RateOutcome> FailoverCounterStore::record_message(const std::string& client, Duration window,
                                                                std::uint32_t limit, TimePoint now) {
    return either([&] { return primary_.record_message(client, window, limit, now); },
                  [&] { return fallback_.record_message(client, window, limit, now); });
}

std::optional<RateOutcome> FailoverCounterStore::reserve_message(const std::string& client,
                                                                 const std::string& reservation, Duration window,
                                                                 std::uint32_t limit, TimePoint now) {
    return either([&] { return primary_.reserve_message(client, reservation, window, limit, now); },
                  [&] { return fallback_.reserve_message(client, reservation, window, limit, now); });
}

void FailoverCounterStore::commit_message(const std::string& client, const std::string& reservation, Duration window,
                                          std::uint32_t limit, TimePoint now) {
    // Redis gets every count: its writes are queued until it answers. While
    // it is away the local count must see the message too, or the fallback
    // would never reach a limit; otherwise only a local slot (reserved during
    // an outage) is given back.
    primary_.commit_message(client, reservation, window, limit, now);
    if (health_.degraded()) fallback_.commit_message(client, reservation, window, limit, now);
    else fallback_.release_message(client, reservation);
}

void FailoverCounterStore::release_message(const std::string& client, const std::string& reservation) {
    primary_.release_message(client, reservation);
    fallback_.release_message(client, reservation);
}

std::optional<GuessOutcome> FailoverCounterStore::record_guess(GuessKind kind, const std::string& client,
                                                               const std::string& guess, Duration window,
                                                               std::uint32_t threshold, Duration block_for,
                                                               TimePoint now) {
    return either([&] { return primary_.record_guess(kind, client, guess, window, threshold, block_for, now); },
                  [&] { return fallback_.record_guess(kind, client, guess, window, threshold, block_for, now); });
}

Lookup<ClientBlock> FailoverCounterStore::block(const std::string& client, TimePoint now) {
    return either([&] { return primary_.block(client, now); }, [&] { return fallback_.block(client, now); });
}

std::optional<AccountOutcome> FailoverCounterStore::record_account_failure(const std::string& user,
                                                                          const std::string& network, Duration window,
                                                                          std::uint32_t max_kept, TimePoint now) {
    return either([&] { return primary_.record_account_failure(user, network, window, max_kept, now); },
                  [&] { return fallback_.record_account_failure(user, network, window, max_kept, now); });
}

bool FailoverCounterStore::mark_failed_auth(const std::string& address, TimePoint until, TimePoint now) {
    return either([&] { return primary_.mark_failed_auth(address, until, now); },
                  [&] { return fallback_.mark_failed_auth(address, until, now); });
}

Lookup<TimePoint> FailoverCounterStore::failed_auth_until(const std::string& address, TimePoint now) {
    return either([&] { return primary_.failed_auth_until(address, now); },
                  [&] { return fallback_.failed_auth_until(address, now); });
}

std::optional<ClientCounters> FailoverCounterStore::inspect(const std::string& client, const CounterWindows& windows,
                                                            TimePoint now) {
    return either([&] { return primary_.inspect(client, windows, now); },
                  [&] { return fallback_.inspect(client, windows, now); });
}

void FailoverCounterStore::forget_messages(const std::string& client) {
    primary_.forget_messages(client);
    fallback_.forget_messages(client);
}

bool FailoverCounterStore::unblock(const std::string& client) {
    bool a = primary_.unblock(client);
    bool b = fallback_.unblock(client);
    return a || b;
}

Lookup<PopWindow> FailoverPopWindowStore::find(const std::string& client, TimePoint now) {
    auto r = primary_.find(client, now);
    if (r) health_.succeeded(); else health_.failed();
    if (!health_.fail_open()) return r;
    // A login taken locally while Redis was away still counts after it returns.
    if (!r || !*r) {
        auto local = fallback_.find(client, now);
        if (local && *local) return local;
    }
    return r ? r : Lookup<PopWindow>{std::optional<PopWindow>{}};
}

std::optional<PopWindowStore::WindowList> FailoverPopWindowStore::list(TimePoint now, std::size_t max) {
    auto r = primary_.list(now, max);
    if (!health_.fail_open()) return r;
    // Windows granted locally while Redis was away are open too.
    auto local = fallback_.list(now, max);
    if (!r) return local;
    for (auto& w : *local) {
        if (r->size() < max) r->push_back(std::move(w));
    }
    return r;
}

bool FailoverPopWindowStore::grant(const std::string& client, const std::string& user, TimePoint until, TimePoint now) {
    if (primary_.grant(client, user, until, now)) {
        health_.succeeded();
        return true;
    }
    health_.failed();
    return health_.fail_open() && fallback_.grant(client, user, until, now);
}

}  // namespace relayguard
