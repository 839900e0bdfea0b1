// The daemons' DNS resolver: c-ares behind a cache. Any worker thread may ask;
// one thread runs the c-ares event loop, so many queries are in flight at
// once. Answers are kept for their TTL (at most cache_max_ttl), "no such
// domain" and "no records" for negative_ttl; a temporary failure is never
// kept. Identical queries in flight share one lookup. The cache holds at
// most cache_max_entries answers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/net/dns_message.h"
#include "common/base/clock.h"
#include "common/base/result.h"
#include "common/net/resolver_settings.h"

struct ares_channeldata;

namespace relayguard {

enum class DnsOutcome {
    answer,             // records of the asked type
    no_such_domain,     // NXDOMAIN
    no_data,            // the name exists, without records of the type
    temporary_failure,  // timeout, SERVFAIL, REFUSED, a malformed reply: ask again later
};

struct DnsResult {
    DnsOutcome outcome = DnsOutcome::temporary_failure;
    std::vector<DnsRecord> records;
    std::string why;  // for temporary failures: what c-ares said
};

class DnsResolver {
public:
    // Fails when c-ares cannot start or a server address is malformed.
    // `clock` ages the cache; lookups wait in real time for their deadline.
    static Result<std::unique_ptr<DnsResolver>> create(const ResolverSettings& settings, const Clock& clock);
    ~DnsResolver();
    DnsResolver(const DnsResolver&) = delete;
    DnsResolver& operator=(const DnsResolver&) = delete;

    // Waits until the answer is there or `deadline` passes (a temporary failure).
    DnsResult lookup(const std::string& name, DnsType type, SteadyTime deadline);
    // Starts a lookup whose answer a later lookup() will likely want.
    void prefetch(const std::string& name, DnsType type);

    // Queries sent to a server, and lookups answered from the cache or by
    // joining one in flight: what the cache saves.
    std::uint64_t queries_sent() const { return queries_sent_; }
    std::uint64_t cache_hits() const { return cache_hits_; }
    std::size_t cache_size() {
        std::lock_guard lock(mutex_);
        return cache_.size();
    }
    // What one lookup may take: timeout × tries.
    std::chrono::milliseconds budget() const { return budget_; }

private:
    struct Passkey {};

public:
    DnsResolver(Passkey, const ResolverSettings& settings, const Clock& clock, ares_channeldata* channel, int wake_fd);

private:
    struct Entry;
    std::shared_ptr<Entry> start(const std::string& name, DnsType type);  // mutex_ held
    void finish(const std::shared_ptr<Entry>& entry, int status, const unsigned char* message, int length);
    void make_room();  // mutex_ held
    void run();
    static void on_answer(void* arg, int status, int timeouts, unsigned char* message, int length);

    const ResolverSettings settings_;
    const Clock& clock_;
    const std::chrono::milliseconds budget_;
    std::mutex mutex_;  // guards the channel (c-ares 1.18 is not thread-safe) and the cache
    ares_channeldata* channel_;
    int wake_fd_;
    std::unordered_map<std::string, std::shared_ptr<Entry>> cache_;
    bool stopping_ = false;
    std::atomic<std::uint64_t> queries_sent_{0};
    std::atomic<std::uint64_t> cache_hits_{0};
    std::thread loop_;
};

}  // namespace relayguard
