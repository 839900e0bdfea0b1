// The daemon's store, memory or Redis behind the fail mode (see the header).
#include "plugin/stores/shared_state.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "common/base/durable_file.h"

#include <spdlog/spdlog.h>

#include "common/base/units.h"

namespace relayguard {

SharedState::SharedState(const StoreSettings& settings, StoreFailMode fail_mode, const Clock& clock,
                         AlertMailer& alerts) {
    bool fail_open = fail_mode == StoreFailMode::open;
    if (settings.type == StoreType::memory) {
        memory_.emplace(settings.memory_max_clients, log_memory_store_full("memory store", fail_open));
        return;
    }
    const auto& r = settings.redis;
    redis_ = std::make_unique<RedisClient>(r);
    health_ = std::make_unique<StoreHealth>("redis " + redis_->describe(), fail_open,
                                            [client = redis_.get()] { return client->last_error(); }, clock);
    health_->on_change([&alerts](bool lost, const std::string& what, const std::string& why) {
        alerts.on_store_change(lost, what, why);
    });
    redis_counters_ = std::make_unique<RedisCounterStore>(*redis_, r.key_prefix, r.connection_lease, clock);
    redis_windows_ = std::make_unique<RedisPopWindowStore>(*redis_, r.key_prefix);
    redis_accounts_ = std::make_unique<RedisAccountStore>(*redis_, r.key_prefix);
    failover_counters_.emplace(*redis_counters_, *health_, settings.memory_max_clients);
    failover_windows_.emplace(*redis_windows_, *health_);
    spdlog::info("store: redis {}, key prefix \"{}\", connection lease {}, timeouts connect {} + command {}",
                 redis_->describe(), r.key_prefix, format_duration(r.connection_lease),
                 format_duration(r.connect_timeout), format_duration(r.command_timeout));
    if (redis_->command({"PING"}, "")) health_->succeeded();
    else health_->failed();
}

CounterStore& SharedState::counters() {
    if (memory_) return *memory_;
    return *failover_counters_;
}

PopWindowStore& SharedState::pop_windows() {
    if (memory_) return memory_windows_;
    return *failover_windows_;
}

AccountStore& SharedState::accounts() {
    if (memory_) return memory_accounts_;
    return *redis_accounts_;
}

void SharedState::add_metrics(MetricsExporter& m) {
    if (memory_) return;
    m.add([this](std::vector<prometheus::MetricFamily>& out) {
        using prometheus::MetricType;
        auto counter = [&](const char* name, const char* help, std::uint64_t value) {
            out.push_back(single_metric(name, help, static_cast<double>(value), MetricType::Counter));
        };
        counter("relayguard_redis_requests_total", "Redis requests sent (redirects included)", redis_->round_trips());
        counter("relayguard_redis_stage_waits_total", "Redis calls an SMTP stage waited for (background writes excluded)",
                redis_->stage_waits());
        counter("relayguard_redis_failures_total", "Redis calls that failed after redirects and retries",
                redis_->failures());
        auto latency = metric_family("relayguard_redis_call_seconds", "Time of one Redis call, redirects included",
                                     MetricType::Histogram);
        latency.metric.push_back(redis_->latency().sample({}));
        out.push_back(std::move(latency));
        out.push_back(single_metric("relayguard_store_reachable", "1 while Redis answers, 0 while the fail mode applies",
                                    health_->degraded() ? 0 : 1, MetricType::Gauge));
    });
}

nlohmann::json SharedState::describe() const {
    if (memory_) {
        return {{"type", "memory"},
                {"clients", memory_->client_count()},
                {"text", "memory (this node only), " + std::to_string(memory_->client_count()) + " clients counted"}};
    }
    bool up = !health_->degraded();
    std::string mode = health_->fail_open() ? "open" : "tempfail";
    return {{"type", "redis"},
            {"server", redis_->describe()},
            {"reachable", up},
            {"fail_mode", mode},
            {"round_trips", redis_->round_trips()},
            {"text", "redis " + redis_->describe() + (up ? ", reachable" : ", UNREACHABLE (" + redis_->last_error() + ")") +
                         ", fail_mode " + mode}};
}

void SharedState::restore_memory(const StoreSettings& settings, TimePoint now) {
    const std::string& path = settings.memory_snapshot;
    if (!memory_ || path.empty()) return;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (errno != ENOENT) spdlog::error("store: cannot read {} ({}); starting with no counters", path, std::strerror(errno));
        return;
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto restored = memory_->restore(text, now);
    if (!restored) {
        // Set aside, not deleted: an admin may want to see it; the next stop writes a new one.
        std::string aside = path + ".bad";
        std::rename(path.c_str(), aside.c_str());
        spdlog::error("store: {} is not a usable snapshot ({}); moved to {}, starting with no counters", path,
                      restored.error(), aside);
        return;
    }
    ::unlink(path.c_str());
    spdlog::info("store: restored from {}: {} client(s), {} of them blocked", path, restored->clients, restored->blocks);
}

void SharedState::save_memory(const StoreSettings& settings, TimePoint now) {
    const std::string& path = settings.memory_snapshot;
    if (!memory_ || path.empty()) return;
    if (auto saved = replace_file_durably(path, memory_->snapshot(now), 0600); !saved) {
        spdlog::error("store: the counters could not be kept for the next start: {}", saved.error());
        return;
    }
    spdlog::info("store: counters and blocks kept in {} for the next start", path);
}

}  // namespace relayguard
