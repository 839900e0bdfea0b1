// What the daemon does when Redis cannot answer, by store.fail_mode:
// "open" counts on this node alone, in memory, until Redis is back (the
// cluster-wide view is lost meanwhile); "tempfail" tells the engine the store
// is unreachable, and the engine answers 4xx. Either way the change of state
// is logged when it happens, and again every minute while it lasts, never
// once per SMTP command.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>

#include "policy/counter_store.h"
#include "policy/memory_counter_store.h"
#include "policy/pop_window_store.h"

namespace relayguard {

class StoreHealth {
public:
    // `why` says what failed, for the log; `what` names the store ("redis single 127.0.0.1:6379").
    // `clock` times the outage and its once-a-minute reminder.
    StoreHealth(std::string what, bool fail_open, std::function<std::string()> why, const Clock& clock);
    void succeeded();
    void failed();
    // Told when the store is lost (true, with why) and when it is back.
    void on_change(std::function<void(bool lost, const std::string& what, const std::string& why)> listener) {
        listener_ = std::move(listener);
    }
    bool fail_open() const { return fail_open_; }
    bool degraded() const { return degraded_; }

private:
    const std::string what_;
    const bool fail_open_;
    const std::function<std::string()> why_;
    const Clock& clock_;
    std::atomic<bool> degraded_{false};
    std::mutex mutex_;
    std::atomic<bool> ever_succeeded_{false};
    SteadyTime since_{};
    SteadyTime next_reminder_{};
    std::uint64_t failures_ = 0;
    std::function<void(bool, const std::string&, const std::string&)> listener_;
};

// The log line for a memory store full of blocked clients and live
// connections: new clients then meet store.fail_mode until room returns.
MemoryCounterStore::FullObserver log_memory_store_full(std::string which, bool fail_open);

class FailoverCounterStore final : public CounterStore {
public:
    FailoverCounterStore(CounterStore& primary, StoreHealth& health, std::size_t fallback_max_clients);

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

private:
    template <class Call, class Fallback>
    auto either(Call primary, Fallback fallback) -> decltype(primary());

    CounterStore& primary_;
    StoreHealth& health_;
    MemoryCounterStore fallback_;
};

class FailoverPopWindowStore final : public PopWindowStore {
public:
    FailoverPopWindowStore(PopWindowStore& primary, StoreHealth& health) : primary_(primary), health_(health) {}
    Lookup<PopWindow> find(const std::string& client, TimePoint now) override;
    bool grant(const std::string& client, const std::string& user, TimePoint until, TimePoint now) override;
    std::optional<WindowList> list(TimePoint now, std::size_t max) override;

private:
    PopWindowStore& primary_;
    StoreHealth& health_;
    MemoryPopWindowStore fallback_;
};

}  // namespace relayguard
