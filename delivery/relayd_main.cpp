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

#include <condition_variable>
#include <csignal>
#include <deque>
#include <iostream>
#include <set>
#include <thread>

#include "common/dns_resolver.h"
#include "common/listen_socket.h"
#include "common/logging.h"
#include "common/privileges.h"
#include "common/system_clock.h"
#include "conf/config.h"
#include "conf/units.h"
#include "delivery/deliverer.h"
#include "delivery/delivery_report.h"
#include "delivery/intake_server.h"
#include "delivery/queue.h"

namespace {

using namespace relayguard;

constexpr int exit_usage = 64;
constexpr int exit_config = 78;

ConfigLoad load(const std::string& path) {
    if (path.empty()) return load_config_text(embedded_default_config(), "<embedded default>");
    return load_config_file(path);
}

std::string iso(TimePoint t) {
    std::time_t secs = std::chrono::system_clock::to_time_t(std::chrono::system_clock::time_point(t));
    std::tm tm{};
    localtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    return buf;
}

// The queue commands work on the directory itself, like postqueue/postsuper:
// a running daemon sees the changes at its next scan (each second).
int queue_command(const DeliverySettings& s, const std::vector<std::string>& args) {
    std::string active = s.queue_dir + "/active/";
    auto set_due_now = [&](const std::string& id) {
        timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
        return ::utimensat(AT_FDCWD, (active + id).c_str(), times, 0) == 0;
    };
    Queue q(s.queue_dir);
    if (args.size() == 1 && args[0] == "list") {
        auto entries = q.scan();
        for (const auto& e : entries) {
            auto m = read_queue_file(active + e.id, false);
            if (!m) {
                std::cout << e.id << "  (unreadable: " << m.error() << ")\n";
                continue;
            }
            std::size_t pending = 0;
            for (const auto& r : m->recipients) pending += r.state == RecipientState::pending;
            std::cout << e.id << "  " << m->size << " bytes  arrived " << iso(m->arrival) << "  next " << iso(e.next_attempt)
                      << "  from <" << m->sender << ">  " << pending << "/" << m->recipients.size() << " to go\n";
        }
        std::cout << entries.size() << " message(s) in " << s.queue_dir << "\n";
        return 0;
    }
    if (args.size() == 2 && args[0] == "show") {
        auto m = read_queue_file(active + args[1], true);
        if (!m) {
            std::cerr << "relayguard-relayd: " << args[1] << ": " << m.error() << "\n";
            return 1;
        }
        std::cout << "id: " << m->id << "\narrival: " << iso(m->arrival) << "\nfrom: <" << m->sender << ">\n";
        for (const auto& r : m->recipients) std::cout << "to: <" << r.address << "> " << static_cast<char>(r.state) << "\n";
        std::cout << "size: " << m->size << "\n\n" << m->content.substr(0, m->content.find("\r\n\r\n")) << "\n";
        return 0;
    }
    if ((args.size() == 1 || args.size() == 2) && args[0] == "flush") {
        std::size_t n = 0;
        for (const auto& e : q.scan()) {
            if (args.size() == 1 || e.id == args[1]) n += set_due_now(e.id);
        }
        std::cout << n << " message(s) due now\n";
        return args.size() == 2 && n == 0 ? 1 : 0;
    }
    if (args.size() == 2 && args[0] == "bounce") {
        // Gives up now: every recipient still to go fails, as when the
        // lifetime ends, and the sender gets the bounce (unless NOTIFY said
        // otherwise, or the message is itself a report).
        auto m = read_queue_file(active + args[1], true);
        if (!m) {
            std::cerr << "relayguard-relayd: " << args[1] << ": " << m.error() << "\n";
            return 1;
        }
        SystemClock clock;
        DeliveryReport report;
        report.reporting_mta = mail_host_name(s);
        report.queue_id = m->id;
        report.sender = m->sender;
        report.envid = m->envid;
        report.arrival = m->arrival;
        report.now = clock.now();
        report.full_message = m->ret != "HDRS" && m->size <= s.bounce_size_limit;
        std::vector<const QueuedRecipient*> bounced;
        for (const auto& r : m->recipients) {
            if (r.state != RecipientState::pending) continue;
            bounced.push_back(&r);
            if (notify_wants(r, "FAILURE")) {
                report.recipients.push_back({r.address, r.orcpt, "5.0.0", "", "", "returned to the sender by the administrator"});
            }
        }
        if (!m->sender.empty() && !report.recipients.empty()) {
            auto queued = q.enqueue(report_message(s, report, m->content), report.now);
            if (!queued) {
                std::cerr << "relayguard-relayd: " << args[1] << ": could not queue the bounce: " << queued.error() << "\n";
                return 1;
            }
            std::cout << args[1] << ": bounce " << *queued << " queued to <" << m->sender << ">\n";
        }
        for (const auto* r : bounced) {
            if (!mark_recipient(active + args[1], *r, RecipientState::failed)) {
                std::cerr << "relayguard-relayd: " << args[1] << ": could not record the bounce\n";
                return 1;
            }
            std::cout << args[1] << ": to=<" << r->address << "> status=bounced (by the administrator)\n";
        }
        ::unlink((active + args[1]).c_str());
        sync_directory(s.queue_dir + "/active");
        std::cout << args[1] << ": " << bounced.size() << " recipient(s) bounced, removed from the queue\n";
        return 0;
    }
    if (args.size() == 2 && args[0] == "delete") {
        if (::unlink((active + args[1]).c_str()) != 0) {
            std::cerr << "relayguard-relayd: " << args[1] << ": " << std::strerror(errno) << "\n";
            return 1;
        }
        sync_directory(s.queue_dir + "/active");
        std::cout << args[1] << " deleted\n";
        return 0;
    }
    std::cerr << "usage: relayguard-relayd [--config FILE] queue list | show ID | flush [ID] | delete ID | bounce ID\n";
    return exit_usage;
}

// The delivery threads and what feeds them.
class Scheduler {
public:
    Scheduler(Queue& queue, Deliverer& deliverer, std::uint32_t threads) : queue_(queue), deliverer_(deliverer) {
        for (std::uint32_t i = 0; i < std::max<std::uint32_t>(threads, 1); ++i) workers_.emplace_back([this] { work(); });
        dispatcher_ = std::thread([this] { dispatch(); });
    }
    ~Scheduler() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        dispatcher_.join();
        for (auto& w : workers_) w.join();
    }
    // A message just queued: due now, so it goes to the threads at once
    // instead of waiting for the next scan of the directory.
    void submit(const std::string& id) {
        {
            std::lock_guard lock(mutex_);
            if (!in_flight_.insert(id).second) return;
            work_.push_back(id);
        }
        wake_.notify_all();
    }

private:
    void dispatch() {
        SystemClock clock;
        std::unique_lock lock(mutex_);
        while (!stopping_) {
            lock.unlock();
            auto entries = queue_.scan();
            TimePoint now = clock.now();
            lock.lock();
            for (const auto& e : entries) {
                if (e.next_attempt <= now && !in_flight_.count(e.id)) {
                    in_flight_.insert(e.id);
                    work_.push_back(e.id);
                }
            }
            if (!work_.empty()) wake_.notify_all();
            wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
        }
    }
    void work() {
        SystemClock clock;
        std::unique_lock lock(mutex_);
        while (true) {
            wake_.wait(lock, [this] { return stopping_ || !work_.empty(); });
            if (stopping_) return;
            std::string id = work_.front();
            work_.pop_front();
            lock.unlock();
            if (!deliverer_.attempt(queue_.dir(), id, clock.now())) queue_.left();
            lock.lock();
            in_flight_.erase(id);
        }
    }

    Queue& queue_;
    Deliverer& deliverer_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::deque<std::string> work_;
    std::set<std::string> in_flight_;
    std::vector<std::thread> workers_;
    std::thread dispatcher_;
};

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
        if (!addr->is_loopback()) spdlog::warn("intake: listening on {}, which is not loopback", config.delivery.listen);
    }
    if (std::string err = drop_privileges(config.daemon.user, config.daemon.group); !err.empty()) {
        spdlog::critical("daemon.user: {}", err);
        return 1;
    }

    Scheduler scheduler(**queue, deliverer, config.delivery.threads);
    IntakeServer intake(
        config.delivery.max_message_size,
        [&](QueuedMessage m) {
            auto id = (*queue)->enqueue(std::move(m), clock.now());
            if (id) scheduler.submit(*id);
            return id;
        },
        [&] { return (*queue)->size() >= current()->max_queue_messages; });
    if (listener) {
        intake.start(std::move(listener));
        spdlog::info("intake: listening on {}", config.delivery.listen);
    }
    std::string route = config.delivery.route == DeliveryRoute::smarthost ? "smart hosts" : "MX";
    spdlog::info("relayguard-relayd started: queue {}, delivery by {}, {} threads", config.delivery.queue_dir, route,
                 config.delivery.threads);

    while (true) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (sig == SIGHUP) {
            auto again = load(config_path);
            if (!again.config) {
                for (const auto& e : again.errors) spdlog::error("reload refused: {}", e.to_string());
                continue;
            }
            std::lock_guard lock(settings_mutex);
            settings = std::make_shared<const DeliverySettings>(again.config->delivery);
            spdlog::info("reloaded {}: routing and lifetimes apply to queued mail from the next attempt", again.config->source);
            continue;
        }
        spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    intake.stop();
    return 0;
}
