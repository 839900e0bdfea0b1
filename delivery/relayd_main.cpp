// relayguard-relayd, the relay client: takes mail in (SMTP/LMTP on loopback,
// or files from relayguard-sendmail), keeps it in the queue directory, and
// delivers it by MX or through smart hosts, retrying until it is delivered or
// its lifetime ends. SIGHUP re-reads the config: routing and lifetimes apply
// to mail already queued.
//
//   relayguard-relayd [--config FILE]
//   relayguard-relayd [--config FILE] queue list | show ID | flush [ID] | delete ID | bounce ID
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

#include "common/daemon/admin_socket.h"
#include "common/net/dns_resolver.h"
#include "common/net/listen_socket.h"
#include "common/daemon/logging.h"
#include "common/daemon/metrics.h"
#include "common/daemon/privileges.h"
#include "common/base/system_clock.h"
#include "conf/config.h"
#include "conf/units.h"
#include "delivery/deliverer.h"
#include "delivery/reports/delivery_report.h"
#include "delivery/intake/intake_server.h"
#include "delivery/queue/queue.h"
#include "delivery/queue/queue_admin.h"
#include "delivery/scheduler.h"

namespace {

using namespace relayguard;

constexpr int exit_usage = 64;
constexpr int exit_config = 78;

ConfigLoad load(const std::string& path) {
    if (path.empty()) return load_config_text(embedded_default_config(), "<embedded default>");
    return load_config_file(path);
}

// `relayguard-relayd queue ...`: the answer printed, as postqueue prints.
int queue_command(const DeliverySettings& s, const std::vector<std::string>& args) {
    auto a = queue_request(s, args);
    std::cout << a.text;
    if (a.ok) return 0;
    std::cerr << "relayguard-relayd: " << a.error << "\n";
    return a.usage ? exit_usage : 1;
}

// Whether MAIL must be answered 452 4.3.1: too many messages queued, or too
// little room left on the queue's file system. The warning is said at most
// once a minute: a full queue is asked at every MAIL.
bool queue_refuses(Queue& queue, const DeliverySettings& s, std::uint64_t declared_size) {
    static std::atomic<std::int64_t> last_warning{std::numeric_limits<std::int64_t>::min() / 2};
    auto warn = [](const std::string& why) {
        auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::steady_clock::now().time_since_epoch()).count();
        auto last = last_warning.load();
        if (now - last >= 60 && last_warning.compare_exchange_strong(last, now)) {
            spdlog::warn("intake: MAIL refused with 452 4.3.1: {}", why);
        }
    };
    if (queue.size() >= s.max_queue_messages) {
        warn(std::to_string(queue.size()) + " messages queued (max_queue_messages = " +
             std::to_string(s.max_queue_messages) + ")");
        return true;
    }
    auto free = queue.free_bytes();
    if (free && *free < s.queue_min_free + declared_size) {
        warn(format_size(*free) + " free in " + queue.dir() + ", needs queue_min_free = " +
             format_size(s.queue_min_free) + (declared_size ? " plus SIZE " + format_size(declared_size) : ""));
        return true;
    }
    return false;
}

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
    if (!s.allow_plaintext_auth) return;
    const char* what = s.auth == SmarthostAuth::smtp_auth        ? "the smart host's AUTH PLAIN/LOGIN password"
                       : s.auth == SmarthostAuth::pop_before_smtp ? "the POP3 USER/PASS password"
                                                                   : "passwords (none configured now)";
    spdlog::warn("delivery.allow_plaintext_auth is true: {} is sent over sessions that are not encrypted, readable "
                 "by anyone on the path; set it only for a parent on a trusted wire",
                 what);
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    std::vector<std::string> queue_args;
    bool queue_mode = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "--config" || a == "-c") && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a == "queue") {
            queue_mode = true;
            queue_args.assign(argv + i + 1, argv + argc);
            break;
        } else {
            std::cerr << "usage: relayguard-relayd [--config FILE] [queue list|show ID|flush [ID]|delete ID]\n";
            return exit_usage;
        }
    }
    auto loaded = load(config_path);
    for (const auto& e : loaded.errors) std::cerr << "relayguard-relayd: " << e.to_string() << "\n";
    if (!loaded.config) return exit_config;
    if (queue_mode) return queue_command(loaded.config->delivery, queue_args);

    const Config& config = *loaded.config;
    if (std::string err = setup_logging(config.log, "relayguard-relayd"); !err.empty()) {
        std::cerr << "relayguard-relayd: key 'log': " << err << "\n";
        return exit_config;
    }
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&signals, s);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    sigdelset(&signals, SIGPIPE);

    std::mutex settings_mutex;
    auto settings = std::make_shared<const DeliverySettings>(config.delivery);
    auto current = [&] {
        std::lock_guard lock(settings_mutex);
        return settings;
    };

    auto queue = Queue::open(config.delivery.queue_dir);
    if (!queue) {
        spdlog::critical("queue: {}", queue.error());
        return 1;
    }
    auto resolver = DnsResolver::create(config.resolver);
    if (!resolver) {
        spdlog::critical("dns: {}", resolver.error());
        return exit_config;
    }
    DestinationState destinations(config.delivery.queue_dir + "/destinations");
    SystemClock clock;
    Deliverer deliverer(current, **resolver, destinations,
                        [&](QueuedMessage report) { return (*queue)->enqueue(std::move(report), clock.now()); });

    auto addr = ListenAddress::parse(config.delivery.listen);
    UniqueFd listener;
    if (addr) {
        auto opened = open_listener(*addr, config.listen.socket_mode, config.listen.socket_group);
        if (auto* err = std::get_if<std::string>(&opened)) {
            spdlog::critical("intake: cannot listen on {}: {}", config.delivery.listen, *err);
            return 1;
        }
        listener = std::move(std::get<UniqueFd>(opened));
        if (!addr->is_loopback()) {
            std::string allowed;
            for (const auto& g : config.delivery.allowed_clients) allowed += (allowed.empty() ? "" : ", ") + g.name;
            spdlog::warn("intake: listening on {}, which is not loopback; mail is taken only from delivery.allowed_clients [{}]",
                         config.delivery.listen, allowed);
        }
    }
    UniqueFd admin_fd;
    if (!config.delivery.admin.empty()) {
        auto admin_addr = ListenAddress::parse(config.delivery.admin);
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(admin_addr->path).parent_path(), ec);
        // Only listen.admin_group, never the MTA's socket_group: whoever can
        // write here can delete and bounce queued mail.
        auto opened = open_listener(*admin_addr, config.listen.socket_mode, config.listen.admin_group);
        if (auto* err = std::get_if<std::string>(&opened)) {
            spdlog::critical("admin: cannot listen on {}: {}", config.delivery.admin, *err);
            return 1;
        }
        admin_fd = std::move(std::get<UniqueFd>(opened));
    }
    if (std::string err = drop_privileges(config.daemon.user, config.daemon.group); !err.empty()) {
        spdlog::critical("daemon.user: {}", err);
        return 1;
    }

    std::atomic<Scheduler*> scheduler_ptr{nullptr};  // set once the scheduler runs

    // SIGHUP and `relayguardctl reload relayd`: "" or the errors.
    std::mutex reload_mutex;
    auto reload = [&]() -> std::string {
        std::lock_guard reloading(reload_mutex);
        auto again = load(config_path);
        if (!again.config) {
            std::string errors;
            for (const auto& e : again.errors) {
                spdlog::error("reload refused, the running configuration stays: {}", e.to_string());
                errors += (errors.empty() ? "" : "; ") + e.to_string();
            }
            return errors;
        }
        DeliverySettings next = again.config->delivery;
        const DeliverySettings& started = config.delivery;
        // What was set up at start stays; say so rather than pretend.
        auto networks = [](const std::vector<IpGroup>& groups) {
            std::vector<std::string> out;
            for (const auto& g : groups)
                for (const auto& n : g.networks) out.push_back(n.to_string());
            return out;
        };
        if (next.listen != started.listen || next.admin != started.admin || next.metrics != started.metrics ||
            next.threads != started.threads || next.queue_dir != started.queue_dir ||
            networks(next.allowed_clients) != networks(started.allowed_clients)) {
            spdlog::warn("reload: delivery.listen, allowed_clients, admin, metrics, threads and queue_dir apply after a "
                         "restart; the running ones stay");
        }
        next.queue_dir = started.queue_dir;  // the scheduler's and the admin commands' queue must be one
        warn_if_plaintext_auth(next);
        std::lock_guard lock(settings_mutex);
        settings = std::make_shared<const DeliverySettings>(std::move(next));
        spdlog::info("reloaded {}: routing and lifetimes apply to queued mail from the next attempt", again.config->source);
        return "";
    };
    auto reply = [](nlohmann::json j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
    AdminSocket admin(
        [&](std::string_view request) {
            std::vector<std::string> words;
            std::istringstream in{std::string(request)};
            for (std::string w; in >> w;) words.push_back(w);
            if (words.size() == 1 && words[0] == "ping") return reply({{"ok", true}, {"text", "relayguard-relayd is running"}});
            if (words.size() == 1 && words[0] == "reload") {
                std::string errors = reload();
                if (!errors.empty()) return reply({{"ok", false}, {"error", errors}});
                return reply({{"ok", true}, {"text", "configuration reloaded"}});
            }
            if (!words.empty() && words[0] == "queue") {
                // A message being delivered this moment is not deleted or
                // bounced under the delivery thread's feet.
                Scheduler* running = scheduler_ptr.load();
                if (words.size() == 3 && (words[1] == "delete" || words[1] == "bounce") && running &&
                    running->busy(words[2])) {
                    return reply({{"ok", false}, {"error", words[2] + " is being delivered right now; try again in a moment"}});
                }
                auto a = queue_request(*current(), std::vector<std::string>(words.begin() + 1, words.end()));
                if (!a.ok) return reply({{"ok", false}, {"error", a.error}});
                nlohmann::json j = a.data;
                j["ok"] = true;
                j["text"] = a.text;
                return reply(std::move(j));
            }
            return reply({{"ok", false}, {"error", "unknown request; requests: ping, reload, queue list|show|flush|delete|bounce"}});
        },
        reply({{"ok", false}, {"error", "no request line within 2 s, or one over 1024 bytes"}}));
    if (admin_fd) {
        admin.start(std::move(admin_fd));
        spdlog::info("admin: listening on {}", config.delivery.admin);
    }

    MetricsExporter metrics;
    metrics.add([&](std::vector<prometheus::MetricFamily>& out) {
        using prometheus::MetricType;
        auto entries = (*queue)->scan();
        auto size = metric_family("relayguard_queue_messages", "Messages in the queue", MetricType::Gauge);
        size.metric.push_back(metric_sample({}, static_cast<double>(entries.size()), MetricType::Gauge));
        // A queue id begins with its arrival time in milliseconds, in hex.
        double oldest = 0;
        auto now_ms = clock.now().time_since_epoch().count();
        for (const auto& e : entries) {
            long long arrival = std::strtoll(e.id.substr(0, e.id.find('-')).c_str(), nullptr, 16);
            if (arrival > 0) oldest = std::max(oldest, static_cast<double>(now_ms - arrival) / 1000.0);
        }
        auto age = metric_family("relayguard_queue_oldest_seconds", "Age of the oldest queued message", MetricType::Gauge);
        age.metric.push_back(metric_sample({}, oldest, MetricType::Gauge));
        const auto& c = deliverer.counts();
        auto deliveries = metric_family("relayguard_deliveries_total", "Recipient delivery attempts by result", MetricType::Counter);
        for (auto [result, n] : {std::pair{"sent", &c.sent}, std::pair{"bounced", &c.bounced}, std::pair{"deferred", &c.deferred}}) {
            deliveries.metric.push_back(metric_sample({{"result", result}}, static_cast<double>(n->load()), MetricType::Counter));
        }
        auto reports = metric_family("relayguard_reports_total", "Delivery reports sent to senders, by kind", MetricType::Counter);
        for (auto [kind, n] : {std::pair{"failure", &c.failure_reports}, std::pair{"delay", &c.delay_reports},
                               std::pair{"relayed", &c.relayed_reports}}) {
            reports.metric.push_back(metric_sample({{"kind", kind}}, static_cast<double>(n->load()), MetricType::Counter));
        }
        auto withheld = metric_family("relayguard_credentials_withheld_total",
                                      "Sessions whose password was not sent because they were not encrypted",
                                      MetricType::Counter);
        withheld.metric.push_back(metric_sample({}, static_cast<double>(c.credentials_withheld.load()), MetricType::Counter));
        auto refusing = metric_family("relayguard_credential_outages",
                                      "Smart hosts and POP3 servers credentials are withheld from now (no encryption)",
                                      MetricType::Gauge);
        refusing.metric.push_back(metric_sample({}, static_cast<double>(deliverer.credential_outages()), MetricType::Gauge));
        for (auto* f : {&size, &age, &deliveries, &reports, &withheld, &refusing}) out.push_back(std::move(*f));
    });
    if (!config.delivery.metrics.empty()) {
        if (auto served = metrics.serve(config.delivery.metrics); !served) {
            spdlog::critical("metrics: {}", served.error());
            return 1;
        }
        spdlog::info("metrics: serving /metrics on {}", config.delivery.metrics);
    }

    Scheduler scheduler(**queue, deliverer, config.delivery.threads, clock);
    scheduler_ptr = &scheduler;
    IntakeServer intake(
        config.delivery.max_message_size, config.delivery.allowed_clients,
        [&](QueuedMessage m) {
            auto id = (*queue)->enqueue(std::move(m), clock.now());
            if (id) scheduler.submit(*id);
            return id;
        },
        [&](std::uint64_t declared_size) { return queue_refuses(**queue, *current(), declared_size); });
    if (listener) {
        intake.start(std::move(listener));
        spdlog::info("intake: listening on {}", config.delivery.listen);
    }
    std::string route = config.delivery.route == DeliveryRoute::smarthost ? "smart hosts" : "MX";
    spdlog::info("relayguard-relayd started: queue {}, delivery by {}, {} threads", config.delivery.queue_dir, route,
                 config.delivery.threads);
    warn_if_plaintext_auth(config.delivery);

    while (true) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig == SIGHUP) {
            reload();
            continue;
        }
        spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    intake.stop();
    admin.stop();
    scheduler_ptr = nullptr;
    if (!config.delivery.admin.empty()) ::unlink(ListenAddress::parse(config.delivery.admin)->path.c_str());
    return 0;
}
