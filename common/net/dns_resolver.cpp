// c-ares event loop and cache; see the header.
#include "common/net/dns_resolver.h"

#include <ares.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "common/base/text_codec.h"

namespace relayguard {

struct DnsResolver::Entry {
    std::string key;
    DnsType type = DnsType::a;
    bool done = false;
    DnsResult result;
    SteadyTime expires{};
    std::condition_variable ready;
};

// The c-ares callback's argument: the resolver and the entry it fills.
struct PendingQuery {
    DnsResolver* resolver;
    std::shared_ptr<void> entry;
};

namespace {

std::string cache_key(const std::string& name, DnsType type) {
    std::string k = ascii_lower(name);
    while (!k.empty() && k.back() == '.') k.pop_back();
    return k + "/" + to_string(type);
}

std::once_flag ares_ready;

}  // namespace

Result<std::unique_ptr<DnsResolver>> DnsResolver::create(const ResolverSettings& settings, const Clock& clock) {
    using R = Result<std::unique_ptr<DnsResolver>>;
    int rc = ARES_SUCCESS;
    std::call_once(ares_ready, [&] { rc = ares_library_init(ARES_LIB_INIT_ALL); });
    if (rc != ARES_SUCCESS) return R::failure(std::string("c-ares: ") + ares_strerror(rc));
    ares_options options{};
    options.timeout = static_cast<int>(std::max<long long>(settings.timeout.count(), 1));
    options.tries = static_cast<int>(std::max<std::uint32_t>(settings.tries, 1));
    ares_channel channel = nullptr;
    rc = ares_init_options(&channel, &options, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) return R::failure(std::string("c-ares: ") + ares_strerror(rc));
    if (!settings.servers.empty()) {
        std::string csv;
        for (const auto& s : settings.servers) csv += (csv.empty() ? "" : ",") + s;
        rc = ares_set_servers_ports_csv(channel, csv.c_str());
        if (rc != ARES_SUCCESS) {
            ares_destroy(channel);
            return R::failure("dns.servers: " + std::string(ares_strerror(rc)));
        }
    }
    int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) {
        ares_destroy(channel);
        return R::failure("eventfd failed");
    }
    return std::make_unique<DnsResolver>(Passkey{}, settings, clock, channel, wake);
}

DnsResolver::DnsResolver(Passkey, const ResolverSettings& settings, const Clock& clock, ares_channeldata* channel,
                         int wake_fd)
    : settings_(settings),
      clock_(clock),
      budget_(std::chrono::duration_cast<std::chrono::milliseconds>(settings.timeout * std::max<std::uint32_t>(settings.tries, 1))),
      channel_(channel),
      wake_fd_(wake_fd) {
    loop_ = std::thread([this] { run(); });
}

DnsResolver::~DnsResolver() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    std::uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    loop_.join();
    // Cancels what is in flight: the callbacks run now, with ARES_EDESTRUCTION.
    std::lock_guard lock(mutex_);
    ares_destroy(channel_);
    close(wake_fd_);
}

void DnsResolver::run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        int bits = ares_getsock(channel_, socks, ARES_GETSOCK_MAXNUM);
        std::vector<pollfd> fds{{wake_fd_, POLLIN, 0}};
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
            short events = 0;
            if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
            if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
            if (events) fds.push_back({socks[i], events, 0});
        }
        timeval max_wait{1, 0};
        timeval wait{};
        ares_timeout(channel_, &max_wait, &wait);
        int ms = static_cast<int>(wait.tv_sec * 1000 + wait.tv_usec / 1000);
        lock.unlock();
        poll(fds.data(), fds.size(), std::max(ms, 1));
        lock.lock();
        if (fds[0].revents & POLLIN) {
            std::uint64_t n;
            (void)!read(wake_fd_, &n, sizeof n);
        }
        bool any = false;
        for (std::size_t i = 1; i < fds.size(); ++i) {
            if (!fds[i].revents) continue;
            any = true;
            ares_socket_t r = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
            ares_socket_t w = (fds[i].revents & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD;
            ares_process_fd(channel_, r, w);
        }
        // Timeouts and retries are processed even when no socket is ready.
        if (!any) ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    }
}

void DnsResolver::on_answer(void* arg, int status, int, unsigned char* message, int length) {
    std::unique_ptr<PendingQuery> q(static_cast<PendingQuery*>(arg));
    q->resolver->finish(std::static_pointer_cast<Entry>(q->entry), status, message, length);
}

// Runs on the loop thread inside ares_process_fd, or in ares_destroy; either
// way with mutex_ held.
void DnsResolver::finish(const std::shared_ptr<Entry>& entry, int status, const unsigned char* message, int length) {
    DnsResult& r = entry->result;
    std::uint32_t ttl = 0;
    switch (status) {
        case ARES_SUCCESS:
            if (auto parsed = parse_dns_answer(message, length, entry->type)) {
                r.records = std::move(parsed->records);
                r.outcome = r.records.empty() ? DnsOutcome::no_data : DnsOutcome::answer;
                ttl = parsed->ttl;
            } else {
                r.outcome = DnsOutcome::temporary_failure;
                r.why = "malformed reply";
            }
            break;
        case ARES_ENODATA: r.outcome = DnsOutcome::no_data; break;
        case ARES_ENOTFOUND: r.outcome = DnsOutcome::no_such_domain; break;
        default:
            r.outcome = DnsOutcome::temporary_failure;
            r.why = ares_strerror(status);
            break;
    }
    entry->done = true;
    auto now = clock_.steady_now();
    switch (r.outcome) {
        case DnsOutcome::answer:
            entry->expires = now + std::min<Duration>(std::chrono::seconds(ttl), settings_.cache_max_ttl);
            break;
        case DnsOutcome::no_such_domain:
        case DnsOutcome::no_data: entry->expires = now + settings_.negative_ttl; break;
        case DnsOutcome::temporary_failure: entry->expires = now; break;
    }
    if (entry->expires <= now || settings_.cache_max_entries == 0) {
        auto it = cache_.find(entry->key);
        if (it != cache_.end() && it->second == entry) cache_.erase(it);
    }
    entry->ready.notify_all();
}

void DnsResolver::make_room() {
    auto now = clock_.steady_now();
    std::erase_if(cache_, [now](const auto& kv) { return kv.second->done && kv.second->expires <= now; });
    std::size_t limit = std::max<std::size_t>(settings_.cache_max_entries, 1);
    if (cache_.size() < limit) return;
    // Still full: drop the tenth that would expire soonest; never one in flight.
    std::vector<std::pair<SteadyTime, std::string>> done;
    for (const auto& [key, e] : cache_) {
        if (e->done) done.emplace_back(e->expires, key);
    }
    std::size_t drop = std::min(done.size(), std::max<std::size_t>(limit / 10, 1));
    std::nth_element(done.begin(), done.begin() + static_cast<std::ptrdiff_t>(drop), done.end());
    for (std::size_t i = 0; i < drop; ++i) cache_.erase(done[i].second);
}

std::shared_ptr<DnsResolver::Entry> DnsResolver::start(const std::string& name, DnsType type) {
    std::string key = cache_key(name, type);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
        if (!it->second->done || it->second->expires > clock_.steady_now()) {
            ++cache_hits_;
            return it->second;
        }
        cache_.erase(it);
    }
    auto entry = std::make_shared<Entry>();
    entry->key = key;
    entry->type = type;
    if (cache_.size() >= std::max<std::size_t>(settings_.cache_max_entries, 1)) make_room();
    cache_[key] = entry;
    ++queries_sent_;
    std::string qname = key.substr(0, key.rfind('/'));
    // c-ares calls on_answer exactly once for every query, which takes the
    // ownership back.
    auto q = std::make_unique<PendingQuery>(PendingQuery{this, entry});
    ares_query(channel_, qname.c_str(), 1 /* IN */, static_cast<int>(type), &DnsResolver::on_answer, q.release());
    std::uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    return entry;
}

DnsResult DnsResolver::lookup(const std::string& name, DnsType type, SteadyTime deadline) {
    std::unique_lock lock(mutex_);
    if (stopping_) return DnsResult{DnsOutcome::temporary_failure, {}, "resolver stopping"};
    auto entry = start(name, type);
    if (!entry->ready.wait_until(lock, deadline, [&] { return entry->done; })) {
        // The caller's deadline: the budget, or less (an SMTP stage's deadline).
        std::string why = "no answer before the deadline (budget " + std::to_string(budget_.count()) + " ms)";
        return DnsResult{DnsOutcome::temporary_failure, {}, std::move(why)};
    }
    return entry->result;
}

void DnsResolver::prefetch(const std::string& name, DnsType type) {
    std::lock_guard lock(mutex_);
    if (!stopping_) start(name, type);
}

}  // namespace relayguard
