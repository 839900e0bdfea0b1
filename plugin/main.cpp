// relayguard, the policy daemon: loads the configuration, sets up logging,
// starts the front ends and runs until SIGTERM or SIGINT; SIGHUP reloads.
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include "common/net/dns_resolver.h"
#include "common/net/listen_socket.h"
#include "common/daemon/logging.h"
#include "common/daemon/metrics.h"
#include "common/daemon/pid_file.h"
#include "common/daemon/privileges.h"
#include "common/base/system_clock.h"
#include "common/base/version.h"
#include "conf/config.h"
#include "conf/units.h"
#include "plugin/ops/admin_server.h"
#include "plugin/ops/alert_mailer.h"
#include "plugin/frontends/decision_log.h"
#include "plugin/ops/login_log_follower.h"
#include "plugin/frontends/milter_front_end.h"
#include "plugin/frontends/policy_server.h"
#include "plugin/ops/signal_inbox.h"
#include "plugin/stores/redis_counter_store.h"
#include "plugin/stores/resolver_dns_answers.h"
#include "plugin/stores/store_failover.h"
#include "policy/memory_counter_store.h"

namespace {

constexpr int exit_usage = 64;   // EX_USAGE
constexpr int exit_config = 78;  // EX_CONFIG

void usage(std::FILE* to) {
    std::fputs(
        "usage: relayguard [--config FILE]\n"
        "       relayguard --check-config FILE\n"
        "       relayguard --print-default-config\n"
        "\n"
        "Without --config, relayguard runs on its embedded default: the example\n"
        "configuration (conf/relayguard.toml), in-memory counters, loopback sockets.\n",
        to);
}

relayguard::ConfigLoad load(const std::string& path) {
    if (path.empty()) return relayguard::load_config_text(relayguard::embedded_default_config(), "<embedded default>");
    return relayguard::load_config_file(path);
}

bool report_errors(const relayguard::ConfigLoad& l) {
    for (const auto& e : l.errors) std::cerr << "relayguard: " << e.to_string() << "\n";
    return l.errors.empty();
}

void log_effective_settings(const relayguard::Config& c) {
    using relayguard::RelayMode;
    const auto& p = c.policy;
    spdlog::info("config {}: milter={} policy={} admin={} workers={} store={}", c.source,
                 c.listen.milter.empty() ? "off" : c.listen.milter, c.listen.policy.empty() ? "off" : c.listen.policy,
                 c.listen.admin.empty() ? "off" : c.listen.admin, c.listen.workers,
                 c.store.type == relayguard::StoreType::memory ? "memory" : "redis");
    std::string groups;
    for (const auto& g : p.relay.trusted_groups) groups += (groups.empty() ? "" : ",") + g.name;
    spdlog::info("relay: mode={} local_domains={} trusted_groups={} sasl={} pop_before_smtp={}",
                 p.relay.mode == RelayMode::open ? "open" : "restricted", p.relay.local_domains.size(),
                 groups.empty() ? "none" : groups, p.relay.allow_sasl, p.relay.allow_pop_before_smtp);
    auto lim = [](const std::optional<std::uint32_t>& m) { return m ? std::to_string(*m) : std::string("off"); };
    const auto& l = p.limits;
    spdlog::info("limits: message_rate={}/{} connections={} unknown_recipients={} recipients={} failed_commands={} "
                 "message_size={} hops={} exempt_group={}",
                 lim(l.message_rate.max), relayguard::format_duration(l.message_rate.window), lim(l.connections.max),
                 lim(l.unknown_recipients.max), lim(l.recipients.max), lim(l.failed_commands.max),
                 l.message_size.max ? relayguard::format_size(*l.message_size.max) : "off", lim(l.hops.max),
                 l.exempt ? l.exempt->name : "none");
    spdlog::debug("effective settings:\n{}", relayguard::render_config(c));
    if (p.relay.mode == RelayMode::open) {
        spdlog::warn("relay.mode = \"open\": this server relays mail for ANY client to ANY domain. "
                     "It is an open relay and will be abused by spammers unless something else restricts it.");
    }
}

// Where the counters live: this node's memory, or Redis behind the fail mode.
class SharedState {
public:
    SharedState(const relayguard::Config& c, const relayguard::Clock& clock, relayguard::AlertMailer& alerts) {
        if (c.store.type == relayguard::StoreType::memory) {
            memory_.emplace(c.store.memory_max_clients,
                            relayguard::log_memory_store_full(
                                "memory store", c.policy.store_fail_mode == relayguard::StoreFailMode::open));
            return;
        }
        const auto& r = c.store.redis;
        redis_ = std::make_unique<relayguard::RedisClient>(r);
        health_ = std::make_unique<relayguard::StoreHealth>(
            "redis " + redis_->describe(), c.policy.store_fail_mode == relayguard::StoreFailMode::open,
            [client = redis_.get()] { return client->last_error(); });
        health_->on_change([&alerts](bool lost, const std::string& what, const std::string& why) {
            alerts.on_store_change(lost, what, why);
        });
        redis_counters_ = std::make_unique<relayguard::RedisCounterStore>(*redis_, r.key_prefix, r.connection_lease, clock);
        redis_windows_ = std::make_unique<relayguard::RedisPopWindowStore>(*redis_, r.key_prefix);
        failover_counters_.emplace(*redis_counters_, *health_, c.store.memory_max_clients);
        failover_windows_.emplace(*redis_windows_, *health_);
        spdlog::info("store: redis {}, key prefix \"{}\", connection lease {}, timeouts connect {} + command {}",
                     redis_->describe(), r.key_prefix, relayguard::format_duration(r.connection_lease),
                     relayguard::format_duration(r.connect_timeout), relayguard::format_duration(r.command_timeout));
        // Say at start whether Redis is there; the daemon runs either way.
        if (redis_->command({"PING"}, "")) health_->succeeded(); else health_->failed();
    }
    relayguard::CounterStore& counters() {
        if (memory_) return *memory_;
        return *failover_counters_;
    }
    relayguard::PopWindowStore& pop_windows() {
        if (memory_) return memory_windows_;
        return *failover_windows_;
    }
    // Adds the store's metrics.
    void add_metrics(relayguard::MetricsExporter& m) {
        if (memory_) return;
        m.add([this](std::vector<prometheus::MetricFamily>& out) {
            using prometheus::MetricType;
            auto requests = relayguard::metric_family("relayguard_redis_requests_total", "Redis requests sent (redirects included)", MetricType::Counter);
            requests.metric.push_back(relayguard::metric_sample({}, static_cast<double>(redis_->round_trips()), MetricType::Counter));
            auto waits = relayguard::metric_family("relayguard_redis_stage_waits_total", "Redis calls an SMTP stage waited for (background writes excluded)", MetricType::Counter);
            waits.metric.push_back(relayguard::metric_sample({}, static_cast<double>(redis_->stage_waits()), MetricType::Counter));
            auto failures = relayguard::metric_family("relayguard_redis_failures_total", "Redis calls that failed after redirects and retries", MetricType::Counter);
            failures.metric.push_back(relayguard::metric_sample({}, static_cast<double>(redis_->failures()), MetricType::Counter));
            auto latency = relayguard::metric_family("relayguard_redis_call_seconds", "Time of one Redis call, redirects included", MetricType::Histogram);
            latency.metric.push_back(redis_->latency().sample({}));
            auto up = relayguard::metric_family("relayguard_store_reachable", "1 while Redis answers, 0 while the fail mode applies", MetricType::Gauge);
            up.metric.push_back(relayguard::metric_sample({}, health_->degraded() ? 0 : 1, MetricType::Gauge));
            for (auto* f : {&requests, &waits, &failures, &latency, &up}) out.push_back(std::move(*f));
        });
    }
    // For `relayguardctl status`.
    nlohmann::json describe() const {
        if (memory_) {
            return {{"type", "memory"}, {"clients", memory_->client_count()},
                    {"text", "memory (this node only), " + std::to_string(memory_->client_count()) + " clients counted"}};
        }
        bool up = !health_->degraded();
        std::string mode = health_->fail_open() ? "open" : "tempfail";
        return {{"type", "redis"}, {"server", redis_->describe()}, {"reachable", up}, {"fail_mode", mode},
                {"round_trips", redis_->round_trips()},
                {"text", "redis " + redis_->describe() + (up ? ", reachable" : ", UNREACHABLE (" + redis_->last_error() + ")") +
                             ", fail_mode " + mode}};
    }

private:
    std::optional<relayguard::MemoryCounterStore> memory_;
    relayguard::MemoryPopWindowStore memory_windows_;
    std::unique_ptr<relayguard::RedisClient> redis_;
    std::unique_ptr<relayguard::StoreHealth> health_;
    std::unique_ptr<relayguard::RedisCounterStore> redis_counters_;
    std::unique_ptr<relayguard::RedisPopWindowStore> redis_windows_;
    std::optional<relayguard::FailoverCounterStore> failover_counters_;
    std::optional<relayguard::FailoverPopWindowStore> failover_windows_;
};

// Reloads asked for by SIGHUP, run one at a time on a thread of their own;
// requests that arrive during a reload are folded into one more.
class ReloadRequests {
public:
    explicit ReloadRequests(std::function<std::string()> reload)
        : reload_(std::move(reload)), thread_([this] { run(); }) {}
    ReloadRequests(const ReloadRequests&) = delete;
    ReloadRequests& operator=(const ReloadRequests&) = delete;
    ~ReloadRequests() { stop(); }

    void request() {
        {
            std::lock_guard lock(mutex_);
            pending_ = true;
        }
        wake_.notify_one();
    }

    void stop() {
        {
            std::lock_guard lock(mutex_);
            quit_ = true;
        }
        wake_.notify_one();
        if (thread_.joinable()) thread_.join();
    }

private:
    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [this] { return pending_ || quit_; });
            if (quit_) return;
            pending_ = false;
            lock.unlock();
            spdlog::info("received SIGHUP: reading the configuration again");
            reload_();
            lock.lock();
        }
    }

    std::function<std::string()> reload_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool pending_ = false;
    bool quit_ = false;
    std::thread thread_;  // last: it starts once the rest exists
};

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "--config" || a == "-c") && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a == "--check-config" && i + 1 < argc) {
            auto l = load(argv[++i]);
            if (!report_errors(l)) return exit_config;
            std::cout << "# " << l.config->source << ": OK. Effective settings:\n" << relayguard::render_config(*l.config);
            return 0;
        } else if (a == "--print-default-config") {
            std::cout << relayguard::embedded_default_config();
            return 0;
        } else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::cerr << "relayguard: unknown argument '" << a << "'\n";
            usage(stderr);
            return exit_usage;
        }
    }

    auto loaded = load(config_path);
    if (!report_errors(loaded)) return exit_config;
    const relayguard::Config& config = *loaded.config;
    if (std::string err = relayguard::setup_logging(config.log, "relayguard"); !err.empty()) {
        std::cerr << "relayguard: " << config.source << ": key 'log': " << err << "\n";
        return exit_config;
    }

    // Every thread started below inherits this mask, so no signal ever
    // interrupts a worker; the main thread alone takes them, once everything
    // is started (SignalInbox). SIGPIPE stays blocked everywhere: a write to
    // a closed socket fails with EPIPE instead.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGPIPE);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);

    if (config_path.empty()) spdlog::info("no --config given: running on the embedded default configuration");
    log_effective_settings(config);

    relayguard::SystemClock clock;
    relayguard::AlertMailer alerts(config.alerts, clock);
    if (!config.alerts.recipients.empty()) {
        relayguard::set_refusal_observer(
            [&alerts](const relayguard::SessionState& s, const relayguard::Decision& d,
                      const relayguard::DecisionContext& ctx) { alerts.on_refusal(s, d, ctx.stage); });
        std::string events;
        for (const auto& e : config.alerts.events) events += (events.empty() ? "" : ",") + e;
        spdlog::info("alerts: {} to {} recipient(s) via {}, at most one per client and event every {}, {} an hour",
                     events, config.alerts.recipients.size(), config.alerts.submit,
                     relayguard::format_duration(config.alerts.per_client_interval), config.alerts.max_per_hour);
    }
    SharedState state(config, clock, alerts);
    // The resolver runs only when a DNS check is on.
    std::unique_ptr<relayguard::DnsResolver> resolver;
    std::optional<relayguard::ResolverDnsAnswers> dns;
    const auto& checks = config.policy.dns;
    if (checks.require_sender_domain || checks.require_client_ptr || checks.require_forward_confirmed_ptr) {
        auto made = relayguard::DnsResolver::create(config.resolver);
        if (!made) {
            spdlog::critical("dns: {}", made.error());
            return exit_config;
        }
        resolver = std::move(*made);
        dns.emplace(*resolver);
        std::string servers;
        for (const auto& s : config.resolver.servers) servers += (servers.empty() ? "" : ",") + s;
        spdlog::info("dns: servers {}, each check answers within {} ms (timeout {} x {} tries), cache {} entries",
                     servers.empty() ? "from /etc/resolv.conf" : servers, resolver->budget().count(),
                     relayguard::format_duration(config.resolver.timeout), config.resolver.tries,
                     config.resolver.cache_max_entries);
    }
    relayguard::MetricsExporter metrics;
    metrics.add([](std::vector<prometheus::MetricFamily>& out) {
        using prometheus::MetricType;
        auto decisions = relayguard::metric_family("relayguard_decisions_total", "Decisions by SMTP stage, rule and verdict", MetricType::Counter);
        for (const auto& [k, n] : relayguard::decision_counts()) {
            decisions.metric.push_back(relayguard::metric_sample({{"stage", k.stage}, {"rule", k.rule}, {"verdict", k.verdict}},
                                                                 static_cast<double>(n), MetricType::Counter));
        }
        auto latency = relayguard::metric_family("relayguard_decision_seconds", "Time to decide, by SMTP stage", MetricType::Histogram);
        for (const auto& [stage, h] : relayguard::decision_latency()) {
            if (h.count() > 0) latency.metric.push_back(h.sample({{"stage", stage}}));
        }
        out.push_back(std::move(decisions));
        out.push_back(std::move(latency));
    });
    state.add_metrics(metrics);
    if (resolver) {
        metrics.add([&resolver](std::vector<prometheus::MetricFamily>& out) {
            using prometheus::MetricType;
            auto queries = relayguard::metric_family("relayguard_dns_queries_total", "DNS queries sent (cache misses)", MetricType::Counter);
            queries.metric.push_back(relayguard::metric_sample({}, static_cast<double>(resolver->queries_sent()), MetricType::Counter));
            auto hits = relayguard::metric_family("relayguard_dns_cache_hits_total", "DNS lookups answered from the cache", MetricType::Counter);
            hits.metric.push_back(relayguard::metric_sample({}, static_cast<double>(resolver->cache_hits()), MetricType::Counter));
            auto size = relayguard::metric_family("relayguard_dns_cache_entries", "Answers held in the DNS cache", MetricType::Gauge);
            size.metric.push_back(relayguard::metric_sample({}, static_cast<double>(resolver->cache_size()), MetricType::Gauge));
            out.push_back(std::move(queries));
            out.push_back(std::move(hits));
            out.push_back(std::move(size));
        });
    }
    if (!config.listen.metrics.empty()) {
        if (auto served = metrics.serve(config.listen.metrics); !served) {
            spdlog::critical("metrics: {}", served.error());
            return 1;
        }
        spdlog::info("metrics: serving /metrics on {}", config.listen.metrics);
    }
    relayguard::EngineHolder engine(std::make_shared<relayguard::DecisionEngine>(
        config.policy, state.counters(), clock, &state.pop_windows(), dns ? &*dns : nullptr));
    // Shared by the two front ends, so that a message both report counts once.
    relayguard::TransactionLedger ledger;

    // SIGHUP and `relayguardctl reload`: the new policy applies to the next
    // decision; a config with errors is refused and the running one stays.
    // Answers "" or the errors.
    std::mutex reload_mutex;
    auto reload = [&]() -> std::string {
        std::lock_guard lock(reload_mutex);
        auto fresh = load(config_path);
        if (!fresh.config) {
            std::string errors;
            for (const auto& e : fresh.errors) {
                spdlog::error("reload refused, the running configuration stays: {}", e.to_string());
                errors += (errors.empty() ? "" : "; ") + e.to_string();
            }
            return errors;
        }
        const relayguard::Config& c = *fresh.config;
        auto& next = c.policy;
        bool wants_dns = next.dns.require_sender_domain || next.dns.require_client_ptr || next.dns.require_forward_confirmed_ptr;
        if (wants_dns && !dns) spdlog::warn("reload: DNS checks were off at start; they start working after a restart");
        // Sockets, store, workers, alerts and logging are set up once, at start.
        auto section = [](const std::string& text, const std::string& name) {
            auto at = text.find("\n[" + name + "]\n");
            if (at == std::string::npos) return std::string();
            auto end = text.find("\n[", at + 1);
            return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
        };
        // A leading newline, so the first section is found like the others.
        std::string before = "\n" + relayguard::render_config(config), after = "\n" + relayguard::render_config(c);
        for (const char* name : {"listen", "daemon", "store", "alerts", "log", "pop_before_smtp"}) {
            if (section(before, name) != section(after, name)) {
                spdlog::warn("reload: [{}] changed; that part applies after a restart", name);
            }
        }
        const auto& r0 = config.resolver;
        const auto& r1 = c.resolver;
        if (r0.servers != r1.servers || r0.timeout != r1.timeout || r0.tries != r1.tries ||
            r0.cache_max_entries != r1.cache_max_entries || r0.cache_max_ttl != r1.cache_max_ttl ||
            r0.negative_ttl != r1.negative_ttl) {
            spdlog::warn("reload: the resolver settings in [dns] changed; they apply after a restart "
                         "(the checks' switches and replies apply now)");
        }
        engine.replace(std::make_shared<relayguard::DecisionEngine>(next, state.counters(), clock, &state.pop_windows(),
                                                                    dns ? &*dns : nullptr));
        spdlog::info("reload: configuration {} applied", c.source);
        log_effective_settings(c);
        return "";
    };

    // Bind every socket first, then drop privileges, then serve.
    std::unique_ptr<relayguard::PolicyServer> policy;
    relayguard::UniqueFd policy_fd;
    if (!config.listen.policy.empty()) {
        auto addr = relayguard::ListenAddress::parse(config.listen.policy);
        auto opened = relayguard::open_listener(*addr, config.listen.socket_mode, config.listen.socket_group);
        if (auto* err = std::get_if<std::string>(&opened)) {
            spdlog::critical("policy: cannot listen on {}: {}", config.listen.policy, *err);
            return 1;
        }
        policy_fd = std::move(std::get<relayguard::UniqueFd>(opened));
        if (!addr->is_loopback()) spdlog::warn("policy: listening on {}, which is not loopback", config.listen.policy);
    }
    relayguard::UniqueFd admin_fd;
    if (!config.listen.admin.empty()) {
        auto addr = relayguard::ListenAddress::parse(config.listen.admin);
        // As systemd's RuntimeDirectory would: the socket's directory may not exist yet.
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(addr->path).parent_path(), ec);
        const std::string& group = config.listen.admin_group.empty() ? config.listen.socket_group : config.listen.admin_group;
        auto opened = relayguard::open_listener(*addr, config.listen.socket_mode, group);
        if (auto* err = std::get_if<std::string>(&opened)) {
            spdlog::critical("admin: cannot listen on {}: {}", config.listen.admin, *err);
            return 1;
        }
        admin_fd = std::move(std::get<relayguard::UniqueFd>(opened));
    }
    bool milter_on = !config.listen.milter.empty();
    if (milter_on) {
        if (std::string err = relayguard::milter::open(engine, ledger, config.listen); !err.empty()) {
            spdlog::critical("milter: {}", err);
            return 1;
        }
    }
    if (std::string err = relayguard::drop_privileges(config.daemon.user, config.daemon.group); !err.empty()) {
        spdlog::critical("daemon.user: {}", err);
        return 1;
    }
    // After the drop, as Postfix's master does it: the daemon's own user
    // owns the file and can remove it at exit. Declared before everything
    // that serves, so it is removed only once they have all stopped.
    std::optional<relayguard::PidFile> pid_file;
    if (!config.daemon.pid_file.empty()) {
        auto written = relayguard::PidFile::write(config.daemon.pid_file);
        if (!written) {
            spdlog::critical("daemon.pid_file: {}; not starting", written.error());
            return 1;
        }
        pid_file.emplace(std::move(*written));
        spdlog::info("daemon: pid {} written to {}", ::getpid(), config.daemon.pid_file);
    }
    if (policy_fd) {
        policy = std::make_unique<relayguard::PolicyServer>(engine, ledger, config.listen);
        policy->start(std::move(policy_fd));
        spdlog::info("policy: listening on {} ({} serving threads)", config.listen.policy, config.listen.workers);
    }
    relayguard::AdminServer admin(
        engine, relayguard::AdminServer::Hooks{
                    reload, [&state] { return state.describe(); },
                    [&state, &clock, &config]() -> relayguard::Result<relayguard::PopWindowStore::WindowList> {
                        using R = relayguard::Result<relayguard::PopWindowStore::WindowList>;
                        if (config.store.type == relayguard::StoreType::redis &&
                            config.store.redis.mode == relayguard::RedisMode::cluster) {
                            return R::failure("pop list is not available on Redis Cluster (the windows are spread "
                                              "over its masters); pop show ADDR works");
                        }
                        auto windows = state.pop_windows().list(clock.now(), 10000);
                        if (!windows) return R::failure("the window store cannot be reached");
                        return std::move(*windows);
                    }});
    if (admin_fd) {
        admin.start(std::move(admin_fd));
        spdlog::info("admin: listening on {}", config.listen.admin);
    }
    std::unique_ptr<relayguard::LoginLogFollower> follower;
    if (!config.pop_logins.log_file.empty()) {
        std::vector<relayguard::LoginPattern> patterns;
        for (const auto& text : config.pop_logins.log_patterns) {
            patterns.push_back(std::get<relayguard::LoginPattern>(relayguard::LoginPattern::compile(text)));
        }
        follower = std::make_unique<relayguard::LoginLogFollower>(
            config.pop_logins.log_file, std::move(patterns), [&engine](const relayguard::LoginSeen& seen) {
                auto current = engine.current();
                auto client = relayguard::IpAddress::parse(seen.address);
                if (!client) return;
                auto until = current->open_pop_window(*client, seen.user, std::nullopt);
                if (!until) {
                    spdlog::error("pop-before-smtp: the window store cannot take the login of {} from {}", seen.user,
                                  client->to_string());
                    return;
                }
                relayguard::log_pop_window(*client, seen.user, *until, current->now(), "log");
            });
        follower->start(std::chrono::milliseconds(250));
        spdlog::info("pop-before-smtp: following {} for logins ({} patterns)", config.pop_logins.log_file,
                     config.pop_logins.log_patterns.size());
    }
    // SIGHUP reloads on a thread of its own, started before the main thread
    // takes signals, so that it inherits them blocked.
    ReloadRequests reloads(reload);
    auto inbox = relayguard::SignalInbox::open();
    if (!inbox) {
        spdlog::critical("signals: {}", inbox.error());
        return 1;
    }
    std::atomic<bool> milter_ended{false};
    std::thread milter_thread;
    if (milter_on) {
        milter_thread = std::thread([&] {
            sigset_t mine;
            sigemptyset(&mine);
            for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mine, sig);
            pthread_sigmask(SIG_BLOCK, &mine, nullptr);
            int rc = relayguard::milter::run();
            if (rc != 0) spdlog::error("milter: libmilter stopped with status {}", rc);
            milter_ended = true;
        });
        spdlog::info("milter: listening on {}", config.listen.milter);
    }
    spdlog::info("relayguard {} started", relayguard::relayguard_version());

    std::string why;
    while (why.empty()) {
        int sig = (*inbox)->wait(std::chrono::milliseconds(200));
        if (sig == SIGTERM) why = "received SIGTERM";
        else if (sig == SIGINT) why = "received SIGINT";
        else if (sig == SIGHUP) reloads.request();
        else if (milter_ended) why = "the milter stopped (libmilter took a signal itself)";
    }
    // Blocked again here: the SIGTERM that tells libmilter to stop must
    // reach its thread, not this one.
    inbox->reset();
    spdlog::info("{}, stopping", why);
    reloads.stop();
    if (follower) follower->stop();
    admin.stop();
    if (!config.listen.admin.empty()) ::unlink(relayguard::ListenAddress::parse(config.listen.admin)->path.c_str());
    if (policy) policy->stop();
    if (milter_on) {
        if (!milter_ended) relayguard::milter::stop();
        milter_thread.join();
        // libmilter's workers still finish their sessions' closes, which use
        // the engine and the ledger below: they must end before those do.
        // A close in progress takes milliseconds; an idle session Postfix
        // keeps open is not waited for long.
        constexpr std::chrono::milliseconds drain{3000};
        if (!relayguard::milter::wait_for_sessions(drain)) {
            spdlog::warn("milter: sessions still open after {} ms; stopping anyway", drain.count());
        }
    }
    relayguard::set_refusal_observer(nullptr);
    spdlog::info("relayguard stopped");
    return 0;
}
