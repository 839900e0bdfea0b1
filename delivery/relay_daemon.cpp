// The relay client's start, run, reload and stop (see the header).
#include "delivery/relay_daemon.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/daemon/privileges.h"
#include "common/net/listen_socket.h"
#include "common/base/units.h"
#include "common/base/text_codec.h"
#include "delivery/queue/queue_admin.h"

namespace relayguard {

namespace {

// delivery.allow_plaintext_auth = true is said at every start and reload:
// a setting that lets passwords cross the wire readable must not be
// forgotten in a config file. So is its opposite's consequence where TLS is
// off: mail that can never go out (but by CRAM-MD5 or implicit TLS).
void warn_if_plaintext_auth(const DeliverySettings& s) {
    bool password = s.auth == SmarthostAuth::smtp_auth ||
                    (s.auth == SmarthostAuth::pop_before_smtp && s.pop_method == PopLoginMethod::user);
    if (!s.allow_plaintext_auth && password && s.starttls == StartTlsPolicy::off) {
        spdlog::warn("delivery.starttls is off and allow_plaintext_auth is false: the password is withheld and mail "
                     "deferred, except over implicit TLS (port 465, or 995 for POP3) or with CRAM-MD5");
    }
    if (s.auth == SmarthostAuth::oauth2 && !s.tls_verify) {
        spdlog::warn("delivery.tls_verify is false: the OAuth2 token goes to a smart host whose certificate is not "
                     "checked, so anyone on the path who answers its STARTTLS can take it");
    }
    if (!s.allow_plaintext_auth) return;
    const char* what = s.auth == SmarthostAuth::smtp_auth        ? "the smart host's AUTH PLAIN/LOGIN password"
                       : s.auth == SmarthostAuth::pop_before_smtp ? "the POP3 USER/PASS password"
                                                                   : "passwords (none configured now)";
    spdlog::warn("delivery.allow_plaintext_auth is true: {} is sent over sessions that are not encrypted, readable "
                 "by anyone on the path; set it only for a parent on a trusted wire",
                 what);
}

std::string json_reply(nlohmann::json j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

RelayDaemon::RelayDaemon(Config config, std::string config_path)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      settings_(std::make_shared<const DeliverySettings>(config_.delivery)),
      applied_(config_) {}

RelayDaemon::~RelayDaemon() = default;

std::shared_ptr<const DeliverySettings> RelayDaemon::current() {
    std::lock_guard lock(settings_mutex_);
    return settings_;
}

int RelayDaemon::start() {
    const auto& d = config_.delivery;
    auto queue = Queue::open(d.queue_dir, clock_.now());
    if (!queue) {
        spdlog::critical("queue: {}", queue.error());
        return 1;
    }
    queue_ = std::move(*queue);
    auto resolver = DnsResolver::create(config_.dns, clock_);
    if (!resolver) {
        spdlog::critical("dns: {}", resolver.error());
        return 78;  // EX_CONFIG
    }
    resolver_ = std::move(*resolver);
    destinations_ = std::make_unique<DestinationState>(d.queue_dir + "/destinations");
    deliverer_ = std::make_unique<Deliverer>([this] { return current(); }, *resolver_, *destinations_,
                                             [this](QueuedMessage report) {
                                                 return queue_->enqueue(std::move(report), clock_.now());
                                             },
                                             clock_);
    oauth_ = std::make_unique<OAuthTokens>([this] { return current(); }, token_endpoint_, clock_);
    deliverer_->use_oauth(*oauth_);
    if (!bind_sockets()) return 1;
    if (auto dropped = drop_privileges(config_.daemon.user, config_.daemon.group); !dropped) {
        spdlog::critical("daemon.user: {}", dropped.error());
        return 1;
    }
    admin_ = std::make_unique<AdminSocket>(
        [this](std::string_view request) { return answer_admin(request); },
        json_reply({{"ok", false}, {"error", "no request line within 2 s, or one over 1024 bytes"}}));
    if (admin_fd_) {
        admin_->start(std::move(admin_fd_));
        spdlog::info("admin: listening on {}", d.admin);
    }
    oauth_->start();  // reads the token store as the daemon's user
    add_metrics();
    if (!metrics_.serve_if_set(config_.delivery.metrics)) return 1;
    scheduler_ = std::make_unique<Scheduler>(*queue_, *deliverer_, d.threads, clock_);
    scheduler_ptr_ = scheduler_.get();
    start_intake();
    spdlog::info("relayguard-relayd started: queue {}, delivery by {}, {} threads", d.queue_dir,
                 d.route == DeliveryRoute::smarthost ? "smart hosts" : "MX", d.threads);
    warn_if_plaintext_auth(d);
    return 0;
}

bool RelayDaemon::bind_sockets() {
    const auto& d = config_.delivery;
    if (auto addr = ListenAddress::parse(d.listen)) {
        auto opened = open_listener(*addr, config_.listen.socket_mode, config_.listen.socket_group);
        if (!opened) {
            spdlog::critical("intake: cannot listen on {}: {}", d.listen, opened.error());
            return false;
        }
        listener_ = std::move(*opened);
        if (!addr->is_loopback()) {
            std::string allowed;
            for (const auto& g : d.allowed_clients) allowed += (allowed.empty() ? "" : ", ") + g.name;
            spdlog::warn("intake: listening on {}, which is not loopback; mail is taken only from "
                         "delivery.allowed_clients [{}]",
                         d.listen, allowed);
        }
    }
    if (d.admin.empty()) return true;
    auto admin_addr = ListenAddress::parse(d.admin);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(admin_addr->path).parent_path(), ec);
    // Only listen.admin_group, never the MTA's socket_group: whoever can
    // write here can delete and bounce queued mail.
    auto opened = open_listener(*admin_addr, config_.listen.socket_mode, config_.listen.admin_group);
    if (!opened) {
        spdlog::critical("admin: cannot listen on {}: {}", d.admin, opened.error());
        return false;
    }
    admin_fd_ = std::move(*opened);
    return true;
}

std::string RelayDaemon::answer_admin(std::string_view request) {
    std::vector<std::string> words;
    std::istringstream in{std::string(request)};
    for (std::string w; in >> w;) words.push_back(w);
    if (words.size() == 1 && words[0] == "ping") return json_reply({{"ok", true}, {"text", "relayguard-relayd is running"}});
    if (words.size() == 1 && words[0] == "reload") {
        auto reloaded = reload();
        if (!reloaded) return json_reply({{"ok", false}, {"error", reloaded.error()}});
        return json_reply({{"ok", true},
                           {"text", reloaded->text()},
                           {"applied", reloaded->applied},
                           {"needs_restart", reloaded->needs_restart}});
    }
    if (!words.empty() && words[0] == "oauth") return answer_oauth(words);
    if (words.empty() || words[0] != "queue") {
        return json_reply({{"ok", false},
                           {"error", "unknown request; requests: ping, reload, queue list|show|flush|delete|bounce, "
                                     "oauth login|status"}});
    }
    // A message being delivered this moment is not deleted or bounced under
    // the delivery thread's feet.
    Scheduler* running = scheduler_ptr_.load();
    if (words.size() == 3 && (words[1] == "delete" || words[1] == "bounce") && running && running->busy(words[2])) {
        return json_reply({{"ok", false}, {"error", words[2] + " is being delivered right now; try again in a moment"}});
    }
    auto a = queue_request(*current(), std::vector<std::string>(words.begin() + 1, words.end()), *destinations_,
                           [this](const std::string& id) { return deliverer_->deferral_reason(id); });
    if (!a.ok) return json_reply({{"ok", false}, {"error", a.error}});
    if (words.size() == 3 && (words[1] == "delete" || words[1] == "bounce")) deliverer_->forget(words[2]);
    nlohmann::json j = a.data;
    j["ok"] = true;
    j["text"] = a.text;
    return json_reply(std::move(j));
}

std::string RelayDaemon::answer_oauth(const std::vector<std::string>& words) {
    auto when = [](TimePoint t) {
        return t == TimePoint{} ? std::string("never") : format_time(t, "%Y-%m-%d %H:%M:%S %Z", TimeZone::local);
    };
    auto in = [this](TimePoint t) {
        auto s = std::chrono::duration_cast<std::chrono::seconds>(t - clock_.now()).count();
        return s > 0 ? "in " + std::to_string(s) + " s" : std::to_string(-s) + " s ago";
    };
    if (words.size() == 2 && words[1] == "login") {
        auto started = oauth_->start_login();
        if (!started) return json_reply({{"ok", false}, {"error", started.error()}});
        return json_reply({{"ok", true},
                           {"verification_uri", started->verification_uri},
                           {"verification_uri_complete", started->verification_uri_complete},
                           {"user_code", started->user_code},
                           {"expires_in", started->expires_in.count()},
                           {"text", "To authorise relayguard-relayd to send as " + current()->username + ", open " +
                                        started->verification_uri + " and enter the code " + started->user_code +
                                        " (it expires in " + std::to_string(started->expires_in.count() / 60) +
                                        " min)."}});
    }
    if (words.size() != 2 || words[1] != "status") {
        return json_reply({{"ok", false}, {"error", "oauth requests: oauth login, oauth status"}});
    }
    auto st = oauth_->status();
    nlohmann::json j{{"ok", true},
                     {"configured", st.configured},
                     {"account", st.account},
                     {"scope", st.scope},
                     {"grant", st.grant},
                     {"token_store", st.token_store},
                     {"refresh_token", st.has_refresh_token},
                     {"access_expires", st.access_expires == TimePoint{} ? "" : when(st.access_expires)},
                     {"authorised_at", st.authorised_at == TimePoint{} ? "" : when(st.authorised_at)},
                     {"refreshed_at", st.refreshed_at == TimePoint{} ? "" : when(st.refreshed_at)},
                     {"problem", st.problem},
                     {"needs_login", st.needs_login},
                     {"login", st.login},
                     {"login_error", st.login_error},
                     {"user_code", st.user_code},
                     {"verification_uri", st.verification_uri}};
    std::string text;
    if (!st.configured) text += "delivery.auth is not \"oauth2\"; what the token store holds:\n";
    text += "account: " + (st.account.empty() ? std::string("(none yet)") : st.account) + "\n";
    text += "grant: " + st.grant + "\nscope: " + (st.scope.empty() ? std::string("(none yet)") : st.scope) + "\n";
    text += "token store: " + st.token_store + "\n";
    text += "authorised: " + when(st.authorised_at) + "\n";
    text += "access token: " + (st.access_expires == TimePoint{} ? std::string("none")
                                                                  : "expires " + when(st.access_expires) + " (" +
                                                                        in(st.access_expires) + ")") + "\n";
    if (st.grant == "refresh_token") {
        text += "refresh token: " + (st.has_refresh_token ? "last used " + when(st.refreshed_at) +
                                                                 (st.refreshed_at == TimePoint{} ? "" : " (" + in(st.refreshed_at) + ")")
                                                           : std::string("none: run relayguardctl oauth login")) + "\n";
    }
    if (!st.login.empty()) {
        text += "login: " + st.login + (st.login == "waiting" ? " for the code " + st.user_code + " at " + st.verification_uri : "") +
                (st.login_error.empty() ? "" : " (" + st.login_error + ")") + "\n";
    }
    text += "state: " + (st.problem.empty() ? std::string("working")
                                             : (st.needs_login ? "needs an admin: " : "failing: ") + st.problem +
                                                   " (since " + when(st.problem_since) + ")");
    j["text"] = text;
    return json_reply(std::move(j));
}

void RelayDaemon::add_metrics() {
    metrics_.add([this](std::vector<prometheus::MetricFamily>& out) {
        using prometheus::MetricType;
        auto entries = queue_->scan();
        // A queue id begins with its arrival time in milliseconds, in hex.
        double oldest = 0;
        auto now_ms = clock_.now().time_since_epoch().count();
        for (const auto& e : entries) {
            long long arrival = std::strtoll(e.id.substr(0, e.id.find('-')).c_str(), nullptr, 16);
            if (arrival > 0) oldest = std::max(oldest, static_cast<double>(now_ms - arrival) / 1000.0);
        }
        out.push_back(single_metric("relayguard_queue_messages", "Messages in the queue",
                                    static_cast<double>(entries.size()), MetricType::Gauge));
        out.push_back(single_metric("relayguard_queue_oldest_seconds", "Age of the oldest queued message", oldest,
                                    MetricType::Gauge));
        const auto& c = deliverer_->counts();
        auto deliveries = metric_family("relayguard_deliveries_total", "Recipient delivery attempts by result", MetricType::Counter);
        for (auto [result, n] : {std::pair{"sent", &c.sent}, std::pair{"bounced", &c.bounced}, std::pair{"deferred", &c.deferred}}) {
            deliveries.metric.push_back(metric_sample({{"result", result}}, static_cast<double>(n->load()), MetricType::Counter));
        }
        out.push_back(std::move(deliveries));
        auto reports = metric_family("relayguard_reports_total", "Delivery reports sent to senders, by kind", MetricType::Counter);
        for (auto [kind, n] : {std::pair{"failure", &c.failure_reports}, std::pair{"delay", &c.delay_reports},
                               std::pair{"relayed", &c.relayed_reports}}) {
            reports.metric.push_back(metric_sample({{"kind", kind}}, static_cast<double>(n->load()), MetricType::Counter));
        }
        out.push_back(std::move(reports));
        out.push_back(single_metric("relayguard_credentials_withheld_total",
                                    "Sessions whose password was not sent because they were not encrypted",
                                    static_cast<double>(c.credentials_withheld.load()), MetricType::Counter));
        const auto& t = oauth_->counts();
        auto refreshes = metric_family("relayguard_oauth_token_requests_total",
                                       "Requests for a new OAuth2 access token, by result", MetricType::Counter);
        for (auto [result, n] : {std::pair{"ok", &t.refreshed}, std::pair{"failed", &t.refresh_failed}}) {
            refreshes.metric.push_back(metric_sample({{"result", result}}, static_cast<double>(n->load()), MetricType::Counter));
        }
        out.push_back(std::move(refreshes));
        out.push_back(single_metric("relayguard_oauth_outage", "1 while the relay client has no usable OAuth2 token",
                                    oauth_->in_outage() ? 1.0 : 0.0, MetricType::Gauge));
        out.push_back(single_metric("relayguard_oauth_auth_refused_total",
                                    "AUTH refusals of the OAuth2 token by the smart host",
                                    static_cast<double>(c.oauth_refused.load()), MetricType::Counter));
        out.push_back(single_metric("relayguard_credential_outages",
                                    "Smart hosts and POP3 servers credentials are withheld from now (no encryption)",
                                    static_cast<double>(deliverer_->credential_outages()), MetricType::Gauge));
    });
}

void RelayDaemon::start_intake() {
    const auto& d = config_.delivery;
    intake_ = std::make_unique<IntakeServer>(
        d.max_message_size, d.allowed_clients,
        [this](QueuedMessage m) {
            auto id = queue_->enqueue(std::move(m), clock_.now());
            if (id) scheduler_->submit(*id);
            return id;
        },
        [this](std::uint64_t declared_size) {
            return admission_.refusal(*current(), queue_->size(), queue_->free_bytes(), declared_size).has_value();
        },
        clock_);
    if (listener_) {
        intake_->start(std::move(listener_));
        spdlog::info("intake: listening on {}", d.listen);
    }
}

std::string RelayDaemon::run_until_signal() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, s);
    for (;;) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig != SIGHUP) return sig == SIGINT ? "received SIGINT" : "received SIGTERM";
        reload();
    }
}

void RelayDaemon::stop(const std::string& why) {
    spdlog::info("{}, stopping", why);
    intake_->stop();
    admin_->stop();
    oauth_->stop();
    scheduler_ptr_ = nullptr;
    if (!config_.delivery.admin.empty()) ::unlink(ListenAddress::parse(config_.delivery.admin)->path.c_str());
}

namespace {

// What relayd binds or sets up at start: its listeners and who may use them
// (allowed_clients, the [ip_groups] it names), the intake's size limit, the
// queue directory, threads, privileges, the resolver and logging. Every
// other [delivery] setting applies at the next attempt; the policy daemon's
// own settings are not relayd's business.
bool relayd_restart_only(const std::string& key) {
    for (const char* k : {"delivery.listen", "delivery.allowed_clients", "delivery.admin", "delivery.metrics",
                          "delivery.threads", "delivery.queue_dir", "delivery.max_message_size",
                          "listen.socket_mode", "listen.socket_group", "listen.admin_group", "dns.servers",
                          "dns.timeout", "dns.tries", "dns.cache_max_entries", "dns.cache_max_ttl", "dns.negative_ttl"}) {
        if (key == k) return true;
    }
    for (const char* table : {"log.", "daemon.", "ip_groups."}) {
        if (key.rfind(table, 0) == 0) return true;
    }
    return false;
}

}  // namespace

Result<ReloadOutcome> RelayDaemon::reload() {
    using R = Result<ReloadOutcome>;
    std::lock_guard reloading(reload_mutex_);
    auto again = load_config(config_path_);
    if (!again.config) {
        for (const auto& e : again.errors) spdlog::error("reload refused, the running configuration stays: {}", e.to_string());
        return R::failure(again.errors_text());
    }
    ReloadOutcome outcome;
    for (auto& key : changed_settings(applied_, *again.config)) {
        if (relayd_restart_only(key)) outcome.needs_restart.push_back(std::move(key));
        else if (key.rfind("delivery.", 0) == 0) outcome.applied.push_back(std::move(key));
    }
    // What was set up at start stays, and is what the next reload compares with.
    Config in_force = applied_;
    in_force.delivery = again.config->delivery;
    const DeliverySettings& started = config_.delivery;
    DeliverySettings& next = in_force.delivery;
    next.listen = started.listen;
    next.allowed_clients = started.allowed_clients;
    next.admin = started.admin;
    next.metrics = started.metrics;
    next.threads = started.threads;
    next.queue_dir = started.queue_dir;  // the scheduler's and the admin commands' queue must be one
    next.max_message_size = started.max_message_size;  // the intake's, fixed at start
    warn_if_plaintext_auth(next);
    {
        std::lock_guard lock(settings_mutex_);
        settings_ = std::make_shared<const DeliverySettings>(next);
    }
    applied_ = std::move(in_force);
    spdlog::info("reload: configuration {} applied: {}; routing and lifetimes apply to queued mail from the next "
                 "attempt", again.config->source, outcome.changes());
    if (!outcome.needs_restart.empty()) spdlog::warn("reload: {}", outcome.not_applied());
    return outcome;
}

}  // namespace relayguard
