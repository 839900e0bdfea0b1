// The policy daemon's start, run, reload and stop (see the header).
#include "plugin/policy_daemon.h"

#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "common/base/version.h"
#include "common/daemon/logging.h"
#include "common/daemon/privileges.h"
#include "common/net/listen_socket.h"
#include "common/base/units.h"
#include "plugin/frontends/decision_log.h"
#include "plugin/frontends/milter_front_end.h"
#include "plugin/frontends/auth_report_log.h"
#include "plugin/ops/account_command.h"

namespace relayguard {

namespace {

bool wants_dns(const PolicySettings& p) {
    return p.dns.require_sender_domain || p.dns.require_client_ptr || p.dns.require_forward_confirmed_ptr;
}

// Sockets, store, workers, alerts, logging and the resolver are set up once,
// at start: a reload that changes them says so rather than half-applying.
// Settings bound at start: sockets, privileges, the store, alerts, logging,
// the log followers and the resolver. ([delivery] is relayd's.)
bool restart_only(const std::string& key) {
    for (const char* table : {"listen.", "daemon.", "store.", "alerts.", "log.", "pop_before_smtp.", "auth_events."}) {
        if (key.rfind(table, 0) == 0) return true;
    }
    for (const char* k : {"dns.servers", "dns.timeout", "dns.tries", "dns.cache_max_entries", "dns.cache_max_ttl",
                          "dns.negative_ttl"}) {
        if (key == k) return true;
    }
    return false;
}

// The config a reload puts in force: `fresh`, with what is bound at start
// taken from `running`.
Config in_force_after_reload(const Config& running, const Config& fresh) {
    Config c = fresh;
    c.listen = running.listen;
    c.daemon = running.daemon;
    c.store = running.store;
    // [store]'s fail mode and reply live with the policy, but the store's
    // fail-over was built with them: they stay as started, as [store] does.
    c.policy.store_fail_mode = running.policy.store_fail_mode;
    c.policy.store_failure_reply = running.policy.store_failure_reply;
    c.alerts = running.alerts;
    c.log = running.log;
    c.pop_before_smtp = running.pop_before_smtp;
    c.auth_events = running.auth_events;
    c.dns = running.dns;
    c.delivery = running.delivery;
    return c;
}

void add_decision_metrics(MetricsExporter& metrics) {
    metrics.add([](std::vector<prometheus::MetricFamily>& out) {
        using prometheus::MetricType;
        auto decisions = metric_family("relayguard_decisions_total", "Decisions by SMTP stage, rule and verdict",
                                       MetricType::Counter);
        for (const auto& [k, n] : decision_counts()) {
            decisions.metric.push_back(metric_sample({{"stage", k.stage}, {"rule", k.rule}, {"verdict", k.verdict}},
                                                     static_cast<double>(n), MetricType::Counter));
        }
        auto latency = metric_family("relayguard_decision_seconds", "Time to decide, by SMTP stage", MetricType::Histogram);
        for (const auto& [stage, h] : decision_latency()) {
            if (h.count() > 0) latency.metric.push_back(h.sample({{"stage", stage}}));
        }
        auto reports = metric_family("relayguard_auth_reports_total",
                                     "Logins reported by Dovecot's auth policy or an MTA's log, by source and outcome",
                                     MetricType::Counter);
        for (const auto& [k, n] : auth_report_counts()) {
            reports.metric.push_back(metric_sample({{"via", k.via}, {"outcome", k.outcome}}, static_cast<double>(n),
                                                   MetricType::Counter));
        }
        out.push_back(std::move(decisions));
        out.push_back(std::move(latency));
        out.push_back(std::move(reports));
    });
}

void add_resolver_metrics(MetricsExporter& metrics, DnsResolver& resolver) {
    metrics.add([&resolver](std::vector<prometheus::MetricFamily>& out) {
        using prometheus::MetricType;
        out.push_back(single_metric("relayguard_dns_queries_total", "DNS queries sent (cache misses)",
                                    static_cast<double>(resolver.queries_sent()), MetricType::Counter));
        out.push_back(single_metric("relayguard_dns_cache_hits_total", "DNS lookups answered from the cache",
                                    static_cast<double>(resolver.cache_hits()), MetricType::Counter));
        out.push_back(single_metric("relayguard_dns_cache_entries", "Answers held in the DNS cache",
                                    static_cast<double>(resolver.cache_size()), MetricType::Gauge));
    });
}

// Opens a listening socket, or says why not.
std::optional<UniqueFd> listen_on(const char* what, const std::string& where, const ListenSettings& l,
                                  const std::string& group) {
    auto addr = ListenAddress::parse(where);
    auto opened = open_listener(*addr, l.socket_mode, group);
    if (!opened) {
        spdlog::critical("{}: cannot listen on {}: {}", what, where, opened.error());
        return std::nullopt;
    }
    if (!addr->is_loopback()) spdlog::warn("{}: listening on {}, which is not loopback", what, where);
    return std::move(*opened);
}

// What the settings protect against and what they leave off, in an admin's
// words, with the key that turns each on: read at a glance at every start.
void log_protection(const Config& c) {
    const auto& l = c.policy.limits;
    const bool milter = !c.listen.milter.empty();
    std::vector<std::string> on, off, no_milter;
    // `what` names the protection, `how` says how much (only when on).
    auto add = [&](bool enabled, LimitMode mode, bool needs_milter, const char* what, const std::string& how,
                   const char* key) {
        if (!enabled) {
            off.push_back(std::string(what) + " (" + key + ")");
        } else if (needs_milter && !milter) {
            no_milter.push_back(what);
        } else {
            on.push_back(std::string(what) + " (" + how + ")" + (mode == LimitMode::warn ? " [warn only]" : ""));
        }
    };
    auto n = [](const auto& max) { return max ? std::to_string(*max) : std::string(); };
    const auto& harvest = l.unknown_recipients;
    add(harvest.max.has_value(), harvest.mode, true, "directory harvest",
        n(harvest.max) + " unknown recipients in " + format_duration(harvest.window) + " block the client for " +
            format_duration(harvest.block_time),
        "limits.unknown_recipients.max");
    add(l.connections.max.has_value(), l.connections.mode, true, "connection floods",
        n(l.connections.max) + " at once per client", "limits.connections.max");
    add(l.failed_commands.max.has_value(), l.failed_commands.mode, false, "command floods",
        "the session closes after " + n(l.failed_commands.max) + " failed commands", "limits.failed_commands.max");
    add(l.hops.max.has_value(), l.hops.mode, true, "mail loops", "more than " + n(l.hops.max) + " Received headers",
        "limits.hops.max");
    add(l.recipients.max.has_value(), l.recipients.mode, false, "recipient floods",
        n(l.recipients.max) + " per message", "limits.recipients.max");
    const auto& guess = l.auth_failures;
    add(guess.max.has_value() && guess.reported, guess.mode, false, "password guessing",
        n(guess.max) + " failed logins in " + format_duration(guess.window) + " block the client for " +
            format_duration(guess.block_time),
        "auth_events, limits.auth_failures.max");
    add(l.message_rate.max.has_value(), l.message_rate.mode, false, "message rate",
        n(l.message_rate.max) + " per " + format_duration(l.message_rate.window) + " per client",
        "limits.message_rate.max");
    add(l.message_size.max.has_value(), l.message_size.mode, false, "message size",
        l.message_size.max ? format_size(*l.message_size.max) : std::string(), "limits.message_size.max");
    const auto& q = l.user_quotas;
    bool quotas = q.defaults.messages_per_hour || q.defaults.messages_per_day || q.defaults.recipients_per_day ||
                  !q.users.empty() || !q.domains.empty();
    add(quotas, q.mode, false, "sending quotas per account", "see limits.user_quotas", "limits.user_quotas");
    add(l.compromised_accounts.enabled(), LimitMode::enforce, false, "compromised accounts",
        "their mail is held", "limits.compromised_accounts");
    const auto& d = c.policy.dns;
    add(d.require_sender_domain || d.require_client_ptr, LimitMode::enforce, false, "DNS checks",
        std::string(d.require_sender_domain ? "sender domain" : "") +
            (d.require_sender_domain && d.require_client_ptr ? ", " : "") + (d.require_client_ptr ? "client PTR" : ""),
        "dns.require_sender_domain, dns.require_client_ptr");
    auto joined = [](const std::vector<std::string>& v) {
        std::string out;
        for (const auto& s : v) out += (out.empty() ? "" : "; ") + s;
        return out.empty() ? std::string("none") : out;
    };
    spdlog::info("protects against: {}", joined(on));
    if (!no_milter.empty()) {
        spdlog::warn("not protected, needs the milter (listen.milter is off): {}", joined(no_milter));
    }
    spdlog::info("off: {}", joined(off));
    if (l.exempt) spdlog::info("exempt from the limits: group {}", l.exempt->name);
}

void log_effective_settings(const Config& c) {
    const auto& p = c.policy;
    spdlog::info("config {}: milter={} policy={} admin={} workers={} store={}", c.source,
                 c.listen.milter.empty() ? "off" : c.listen.milter, c.listen.policy.empty() ? "off" : c.listen.policy,
                 c.listen.admin.empty() ? "off" : c.listen.admin, c.listen.workers,
                 c.store.type == StoreType::memory ? "memory" : "redis");
    std::string groups;
    for (const auto& g : p.relay.trusted_groups) groups += (groups.empty() ? "" : ",") + g.name;
    spdlog::info("relay: mode={} local_domains={} trusted_groups={} sasl={} pop_before_smtp={}",
                 p.relay.mode == RelayMode::open ? "open" : "restricted", p.relay.local_domains.size(),
                 groups.empty() ? "none" : groups, p.relay.allow_sasl, p.relay.allow_pop_before_smtp);
    log_protection(c);
    spdlog::debug("effective settings:\n{}", render_config(c));
    if (p.relay.mode == RelayMode::open) {
        spdlog::warn("relay.mode = \"open\": this server relays mail for ANY client to ANY domain. "
                     "It is an open relay and will be abused by spammers unless something else restricts it.");
    }
}

}  // namespace

PolicyDaemon::PolicyDaemon(Config config, std::string config_path)
    : config_(std::move(config)), config_path_(std::move(config_path)), alerts_(config_.alerts, clock_) {}

PolicyDaemon::~PolicyDaemon() {
    if (milter_thread_.joinable()) milter_thread_.join();
}

int PolicyDaemon::start() {
    if (config_path_.empty()) spdlog::info("no --config given: running on the embedded default configuration");
    log_effective_settings(config_);
    announce_alerts();
    state_ = std::make_unique<SharedState>(config_.store, config_.policy.store_fail_mode, clock_, alerts_);
    state_->restore_memory(config_.store, clock_.now());
    if (!wire_resolver()) return 78;  // EX_CONFIG
    wire_metrics();
    if (!metrics_.serve_if_set(config_.listen.metrics)) return 1;
    auto policy = effective_policy(config_);
    if (!policy) {
        spdlog::critical("{}: {}", config_.source, policy.error());
        return 78;  // EX_CONFIG
    }
    engine_ = std::make_unique<EngineHolder>(make_engine(*policy));
    // Bind every socket first, then drop privileges, then serve.
    if (!bind_sockets() || !drop_privileges_and_write_pid()) return 1;
    start_front_ends();
    follow_logins();
    follow_auth_failures();
    // SIGHUP reloads on a thread of its own, started before the main thread
    // takes signals, so that it inherits them blocked.
    reloads_ = std::make_unique<ReloadRequests>([this] {
        auto r = reload();
        return r ? Status(Done{}) : Status::failure(r.error());
    });
    auto inbox = SignalInbox::open();
    if (!inbox) {
        spdlog::critical("signals: {}", inbox.error());
        return 1;
    }
    inbox_ = std::move(*inbox);
    start_milter_thread();
    watch_mta_domains();
    spdlog::info("relayguard {} started", relayguard_version());
    return 0;
}

void PolicyDaemon::announce_alerts() {
    const auto& a = config_.alerts;
    if (a.recipients.empty()) return;
    set_refusal_observer([this](const SessionState& s, const Decision& d, const DecisionContext& ctx) {
        alerts_.on_refusal(s, d, ctx.stage);
    });
    std::string events;
    for (const auto& e : a.events) events += (events.empty() ? "" : ",") + e;
    spdlog::info("alerts: {} to {} recipient(s) via {}, at most one per client and event every {}, {} an hour", events,
                 a.recipients.size(), a.submit, format_duration(a.per_client_interval), a.max_per_hour);
}

bool PolicyDaemon::wire_resolver() {
    if (!wants_dns(config_.policy)) return true;
    auto made = DnsResolver::create(config_.dns, clock_);
    if (!made) {
        spdlog::critical("dns: {}", made.error());
        return false;
    }
    resolver_ = std::move(*made);
    dns_.emplace(*resolver_);
    std::string servers;
    for (const auto& s : config_.dns.servers) servers += (servers.empty() ? "" : ",") + s;
    spdlog::info("dns: servers {}, each check answers within {} ms (timeout {} x {} tries), cache {} entries",
                 servers.empty() ? "from /etc/resolv.conf" : servers, resolver_->budget().count(),
                 format_duration(config_.dns.timeout), config_.dns.tries, config_.dns.cache_max_entries);
    return true;
}

void PolicyDaemon::wire_metrics() {
    add_decision_metrics(metrics_);
    state_->add_metrics(metrics_);
    if (resolver_) add_resolver_metrics(metrics_, *resolver_);
}

bool PolicyDaemon::bind_sockets() {
    const auto& l = config_.listen;
    if (!l.policy.empty()) {
        auto fd = listen_on("policy", l.policy, l, l.socket_group);
        if (!fd) return false;
        policy_fd_ = std::move(*fd);
    }
    if (!l.admin.empty()) {
        // As systemd's RuntimeDirectory would: the socket's directory may not exist yet.
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(ListenAddress::parse(l.admin)->path).parent_path(), ec);
        auto fd = listen_on("admin", l.admin, l, l.admin_group.empty() ? l.socket_group : l.admin_group);
        if (!fd) return false;
        admin_fd_ = std::move(*fd);
    }
    if (!config_.auth_events.dovecot_policy.empty()) {
        dovecot_ = std::make_unique<DovecotPolicyServer>(
            *engine_, config_.auth_events,
            [this](const std::string& user, std::uint32_t networks, const IpAddress& last) {
                on_account_attack(user, networks, last);
            });
        if (auto bound = dovecot_->bind(); !bound) {
            spdlog::critical("auth_events.dovecot_policy: {}", bound.error());
            return false;
        }
    }
    if (!l.milter.empty()) {
        if (auto opened = milter::open(*engine_, ledger_, l); !opened) {
            spdlog::critical("milter: {}", opened.error());
            return false;
        }
    }
    return true;
}

bool PolicyDaemon::drop_privileges_and_write_pid() {
    if (auto dropped = drop_privileges(config_.daemon.user, config_.daemon.group); !dropped) {
        spdlog::critical("daemon.user: {}", dropped.error());
        return false;
    }
    if (config_.daemon.pid_file.empty()) return true;
    auto written = PidFile::write(config_.daemon.pid_file);
    if (!written) {
        spdlog::critical("daemon.pid_file: {}; not starting", written.error());
        return false;
    }
    pid_file_.emplace(std::move(*written));
    spdlog::info("daemon: pid {} written to {}", ::getpid(), config_.daemon.pid_file);
    return true;
}

void PolicyDaemon::start_front_ends() {
    if (policy_fd_) {
        policy_ = std::make_unique<PolicyServer>(*engine_, ledger_, config_.listen);
        policy_->start(std::move(policy_fd_));
        spdlog::info("policy: listening on {} ({} serving threads)", config_.listen.policy, config_.listen.workers);
    }
    auto pop_list = [this]() -> Result<PopWindowStore::WindowList> {
        using R = Result<PopWindowStore::WindowList>;
        if (config_.store.type == StoreType::redis && config_.store.redis.mode == RedisMode::cluster) {
            return R::failure("pop list is not available on Redis Cluster (the windows are spread "
                              "over its masters); pop show ADDR works");
        }
        auto windows = state_->pop_windows().list(clock_.now(), 10000);
        if (!windows) return R::failure("the window store cannot be reached");
        return std::move(*windows);
    };
    if (dovecot_) {
        dovecot_->start();
        spdlog::info("auth-events: Dovecot's auth policy requests on {} (failed logins: {}; POP3/IMAP logins open "
                     "POP-before-SMTP windows: {})",
                     config_.auth_events.dovecot_policy,
                     config_.policy.limits.auth_failures.max
                         ? "block after " + std::to_string(*config_.policy.limits.auth_failures.max)
                         : std::string("counted, never blocked"),
                     config_.policy.relay.allow_pop_before_smtp ? "yes" : "no");
    }
    admin_ = std::make_unique<AdminServer>(
        *engine_, AdminServer::Hooks{[this] { return reload(); }, [this] { return state_->describe(); }, pop_list});
    if (admin_fd_) {
        admin_->start(std::move(admin_fd_));
        spdlog::info("admin: listening on {}", config_.listen.admin);
    }
}

void PolicyDaemon::follow_logins() {
    const auto& p = config_.pop_before_smtp;
    if (p.log_file.empty()) return;
    std::vector<LoginPattern> patterns;
    for (const auto& text : p.log_patterns) patterns.push_back(*LoginPattern::compile(text));  // checked at load
    follower_ = std::make_unique<LoginLogFollower>(p.log_file, std::move(patterns), [this](const LoginSeen& seen) {
        auto current = engine_->current();
        auto client = IpAddress::parse(seen.address);
        if (!client) return;
        auto until = current->open_pop_window(*client, seen.user, std::nullopt);
        if (!until) {
            spdlog::error("pop-before-smtp: the window store cannot take the login of {} from {}", seen.user,
                          client->to_string());
            return;
        }
        log_pop_window(*client, seen.user, *until, current->now(), "log");
    });
    follower_->start(std::chrono::milliseconds(250));
    spdlog::info("pop-before-smtp: following {} for logins ({} patterns)", p.log_file, p.log_patterns.size());
}

std::shared_ptr<DecisionEngine> PolicyDaemon::make_engine(const PolicySettings& policy) {
    return std::make_shared<DecisionEngine>(policy, state_->counters(), clock_, &state_->pop_windows(),
                                            dns_ ? &*dns_ : nullptr, &state_->accounts(),
                                            static_cast<AccountObserver*>(this));
}

Result<PolicySettings> PolicyDaemon::effective_policy(const Config& c) {
    const auto& src = c.local_domains;
    if (src.from == DomainsFrom::none) {
        std::lock_guard lock(watched_mutex_);
        mta_watched_.clear();
        mta_fingerprint_.clear();
        mta_domain_names_.clear();
        applied_ = c;
        return c.policy;
    }
    MtaDomainSource source{src.from == DomainsFrom::postfix ? MtaKind::postfix : MtaKind::sendmail, src.mta_config,
                           src.unreadable_tables == UnreadableTables::stop};
    auto read = add_mta_domains(c.policy, source);
    if (!read) return Result<PolicySettings>::failure(read.error());
    {
        // Taken right after the read: a change from now on is seen at the
        // next poll.
        std::lock_guard lock(watched_mutex_);
        mta_watched_ = read->watched;
        mta_fingerprint_ = files_fingerprint(mta_watched_);
    }
    if (read->names != mta_domain_names_) {
        std::string names;
        for (const auto& n : read->names) names += (names.empty() ? "" : " ") + n;
        spdlog::info("relay: {} local domain(s) from {}: {}", read->names.size(), mta_name(source.kind),
                     names.empty() ? "none" : names);
        mta_domain_names_ = read->names;
    }
    applied_ = c;
    return std::move(read->policy);
}

void PolicyDaemon::watch_mta_domains() {
    if (mta_watch_ || applied_.local_domains.from == DomainsFrom::none) return;
    // A stat() of a few files: cheap enough to make a new domain local
    // within seconds of `postmap` or an edit of main.cf.
    constexpr std::chrono::seconds every{5};
    mta_watch_ = std::make_unique<FilesWatch>(
        every,
        [this] {
            std::lock_guard lock(watched_mutex_);
            return !mta_watched_.empty() && files_fingerprint(mta_watched_) != mta_fingerprint_;
        },
        [this] { refresh_mta_domains(); });
    mta_watch_->start();
}

void PolicyDaemon::refresh_mta_domains() {
    std::lock_guard lock(reload_mutex_);
    Config c = applied_;
    auto policy = effective_policy(c);
    if (!policy) {
        // Tried again at every poll until it reads; said once per reason.
        if (policy.error() != mta_refresh_error_) {
            spdlog::error("relay: the MTA's domains changed but cannot be read again; the domains in force stay: {}",
                          policy.error());
            mta_refresh_error_ = policy.error();
        }
        return;
    }
    mta_refresh_error_.clear();
    engine_->replace(make_engine(*policy));
}

void PolicyDaemon::account_compromised(const std::string& user, const std::string& reason, const IpAddress& client) {
    security_log()->warn("account-compromised user={} client={} reason={}: its mail is held until "
                         "`relayguardctl user release` or `user clear`",
                         log_quoted(user), client.to_string(), log_quoted(reason));
    alerts_.on_account_compromised(user, reason, client);
    // The configured command is read from the settings in force now.
    run_account_command(engine_->current()->settings().limits.compromised_accounts.command, user, reason);
}

void PolicyDaemon::on_account_attack(const std::string& user, std::uint32_t networks, const IpAddress& last) {
    alerts_.on_account_attack(user, networks, last);
}

void PolicyDaemon::follow_auth_failures() {
    const auto& a = config_.auth_events;
    if (a.log_files.empty()) return;
    std::vector<LoginPattern> patterns;
    for (const auto& text : a.log_patterns) patterns.push_back(*LoginPattern::compile(text));  // checked at load
    for (const auto& file : a.log_files) {
        auto follower = std::make_unique<LoginLogFollower>(file, patterns, [this](const LoginSeen& seen) {
            auto client = IpAddress::parse(seen.address);
            if (!client) return;
            apply_auth_report(*engine_->current(), AuthReport{*client, seen.user, "", "smtp", false}, "log",
                              [this](const std::string& user, std::uint32_t networks, const IpAddress& last) {
                                  on_account_attack(user, networks, last);
                              });
        });
        follower->start(std::chrono::milliseconds(250));
        auth_log_followers_.push_back(std::move(follower));
    }
    spdlog::info("auth-events: following {} log file(s) for failed SMTP AUTH ({} patterns)", a.log_files.size(),
                 a.log_patterns.size());
}

void PolicyDaemon::start_milter_thread() {
    if (config_.listen.milter.empty()) return;
    milter_thread_ = std::thread([this] {
        sigset_t mine;
        sigemptyset(&mine);
        for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mine, sig);
        pthread_sigmask(SIG_BLOCK, &mine, nullptr);
        int rc = milter::run();
        if (rc != 0) spdlog::error("milter: libmilter stopped with status {}", rc);
        milter_ended_ = true;
    });
    spdlog::info("milter: listening on {}", config_.listen.milter);
}

std::string PolicyDaemon::run_until_signal() {
    for (;;) {
        int sig = inbox_->wait(std::chrono::milliseconds(200));
        if (sig == SIGTERM) return "received SIGTERM";
        if (sig == SIGINT) return "received SIGINT";
        if (sig == SIGHUP) reloads_->request();
        else if (milter_ended_) return "the milter stopped (libmilter took a signal itself)";
    }
}

void PolicyDaemon::stop(const std::string& why) {
    // Blocked again here: the SIGTERM that tells libmilter to stop must
    // reach its thread, not this one.
    inbox_.reset();
    spdlog::info("{}, stopping", why);
    reloads_->stop();
    if (mta_watch_) mta_watch_->stop();
    if (follower_) follower_->stop();
    for (auto& f : auth_log_followers_) f->stop();
    admin_->stop();
    if (dovecot_) dovecot_->stop();
    if (!config_.listen.admin.empty()) ::unlink(ListenAddress::parse(config_.listen.admin)->path.c_str());
    if (policy_) policy_->stop();
    if (!config_.listen.milter.empty()) {
        if (!milter_ended_) milter::stop();
        milter_thread_.join();
        // libmilter's workers still finish their sessions' closes, which use
        // the engine and the ledger: they must end before those do. A close
        // in progress takes milliseconds; an idle session Postfix keeps open
        // is not waited for long.
        constexpr std::chrono::milliseconds drain{3000};
        if (!milter::wait_for_sessions(drain)) {
            spdlog::warn("milter: sessions still open after {} ms; stopping anyway", drain.count());
        }
    }
    set_refusal_observer(nullptr);
    // Every front end has ended: the counters are final.
    if (state_) state_->save_memory(config_.store, clock_.now());
    spdlog::info("relayguard stopped");
}

Result<ReloadOutcome> PolicyDaemon::reload() {
    using R = Result<ReloadOutcome>;
    std::lock_guard lock(reload_mutex_);
    auto fresh = load_config(config_path_);
    if (!fresh.config) {
        for (const auto& e : fresh.errors) spdlog::error("reload refused, the running configuration stays: {}", e.to_string());
        return R::failure(fresh.errors_text());
    }
    ReloadOutcome outcome;
    for (auto& key : changed_settings(applied_, *fresh.config)) {
        if (key.rfind("delivery.", 0) == 0) continue;
        (restart_only(key) ? outcome.needs_restart : outcome.applied).push_back(std::move(key));
    }
    Config c = in_force_after_reload(applied_, *fresh.config);
    if (wants_dns(c.policy) && !dns_) {
        outcome.needs_restart.push_back("dns checks (the resolver starts with the first check on at start)");
    }
    auto policy = effective_policy(c);
    if (!policy) {
        spdlog::error("reload refused, the running configuration stays: {}", policy.error());
        return R::failure(policy.error());
    }
    engine_->replace(make_engine(*policy));
    watch_mta_domains();  // a reload may be the first to read the MTA
    spdlog::info("reload: configuration {} applied: {}", fresh.config->source, outcome.changes());
    if (!outcome.needs_restart.empty()) spdlog::warn("reload: {}", outcome.not_applied());
    // The running values, never the file's for what did not apply.
    log_effective_settings(c);
    return outcome;
}

}  // namespace relayguard
