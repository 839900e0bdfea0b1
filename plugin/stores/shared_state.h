// Where the counters and POP-before-SMTP windows live: this node's memory,
// or Redis behind the fail mode (store_failover.h), chosen by [store].
// The daemon builds one at start; the engine sees only the two interfaces.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>

#include "common/daemon/metrics.h"
#include "common/redis/redis_client.h"
#include "plugin/stores/store_settings.h"
#include "policy/policy_settings.h"
#include "plugin/ops/alert_mailer.h"
#include "plugin/stores/redis_counter_store.h"
#include "plugin/stores/store_failover.h"
#include "plugin/stores/redis_account_store.h"
#include "policy/account_store.h"
#include "policy/memory_counter_store.h"

namespace relayguard {

class SharedState {
public:
    // Says at start whether Redis is there; the daemon runs either way.
    SharedState(const StoreSettings& settings, StoreFailMode fail_mode, const Clock& clock, AlertMailer& alerts);
    CounterStore& counters();
    PopWindowStore& pop_windows();
    // Accounts' logins and compromised marks. On Redis without a fail-over:
    // while Redis is away, no account is found marked (its mail flows) and
    // no login is counted; the log says the store is lost.
    AccountStore& accounts();
    // Adds the store's metrics (Redis only).
    void add_metrics(MetricsExporter& m);
    // For `relayguardctl status`: the kind, its health, and a "text".
    nlohmann::json describe() const;
    // store.memory_snapshot: the memory store's counters and blocks from the
    // file a clean stop wrote (the file is removed once read, so a crash
    // later never brings back what was lifted meanwhile), and into it at
    // stop. Nothing with Redis or without the setting.
    void restore_memory(const StoreSettings& settings, TimePoint now);
    void save_memory(const StoreSettings& settings, TimePoint now);

private:
    std::optional<MemoryCounterStore> memory_;
    MemoryPopWindowStore memory_windows_;
    MemoryAccountStore memory_accounts_;
    std::unique_ptr<RedisClient> redis_;
    std::unique_ptr<StoreHealth> health_;
    std::unique_ptr<RedisCounterStore> redis_counters_;
    std::unique_ptr<RedisPopWindowStore> redis_windows_;
    std::unique_ptr<RedisAccountStore> redis_accounts_;
    std::optional<FailoverCounterStore> failover_counters_;
    std::optional<FailoverPopWindowStore> failover_windows_;
};

}  // namespace relayguard
