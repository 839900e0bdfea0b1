// Routing a command to the right Redis server; see the header.
#include "common/redis/redis_client.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <thread>

#include "common/base/system_clock.h"
#include "common/redis/redis_routing.h"
#include "common/base/stage_deadline.h"

namespace relayguard {

namespace {

constexpr int max_attempts = 6;  // redirects and reconnects within one call
constexpr std::chrono::milliseconds discovery_interval{250};
constexpr std::chrono::milliseconds refresh_interval{100};

std::string hex_sha1(const std::string& text) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text.data(), text.size(), md, &len, EVP_sha1(), nullptr);
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out += digits[md[i] >> 4];
        out += digits[md[i] & 0xf];
    }
    return out;
}

// Whether the current SMTP stage's deadline has come, give or take the 5 ms
// steps a read's socket timeout is rounded down to (so a read cut by the
// deadline ends just before it).
bool stage_ran_out() {
    return stage_deadline_or(SteadyTime::max()) <= SystemClock::monotonic() + std::chrono::milliseconds(10);
}

bool master_is_gone(const RedisValue& reply) {
    // A master demoted by a failover answers READONLY; one restarting, LOADING.
    std::string code = reply.error_code();
    return code == "READONLY" || code == "LOADING" || code == "MASTERDOWN";
}

}  // namespace

RedisScript::RedisScript(std::string text) : body(std::move(text)), sha1(hex_sha1(body)) {}

RedisClient::RedisClient(const RedisSettings& settings) : settings_(settings) {
    for (const auto& s : settings_.servers) {
        if (auto e = RedisEndpoint::parse(s)) servers_.push_back(*e);
    }
    if (settings_.mode == RedisMode::single && !servers_.empty()) {
        master_ = make_pool(servers_.front());
        master_suspect_ = false;
    }
}

RedisClient::~RedisClient() = default;

std::shared_ptr<RedisPool> RedisClient::make_pool(const RedisEndpoint& where) const {
    return std::make_shared<RedisPool>(where, settings_.pool_size,
                                       std::chrono::duration_cast<std::chrono::milliseconds>(settings_.connect_timeout),
                                       RedisCredentials{settings_.username, settings_.password});
}

SteadyTime RedisClient::deadline() const {
    // The SMTP stage waiting for this call may have less time left than
    // Redis's own timeouts allow (listen.stage_timeout): it wins.
    return stage_deadline_or(SystemClock::monotonic() + settings_.connect_timeout + settings_.command_timeout);
}

std::string RedisClient::describe() const {
    std::string list;
    for (const auto& s : servers_) list += (list.empty() ? "" : ",") + s.to_string();
    switch (settings_.mode) {
        case RedisMode::single: return "single " + list;
        case RedisMode::sentinel: return "sentinel master '" + settings_.sentinel_master + "' via " + list;
        case RedisMode::cluster: return "cluster seeds " + list;
    }
    return list;
}

Result<RedisValue> RedisClient::command(const std::vector<std::string>& args, std::string_view routing_key) {
    auto start = SystemClock::monotonic();
    Result<RedisValue> reply = Result<RedisValue>::failure("");
    if (in_stage()) ++stage_waits_;
    if (stage_expired()) {
        // Nothing is sent: the stage has no time left to wait for a reply.
        reply = Result<RedisValue>::failure(redis_stage_timeout);
    } else if (settings_.mode == RedisMode::cluster) {
        reply = on_cluster(args, routing_key, deadline());
    } else {
        auto replies = on_master({args}, deadline());
        reply = replies ? Result<RedisValue>(std::move(replies->front())) : Result<RedisValue>::failure(replies.error());
    }
    latency_.observe(std::chrono::duration<double>(SystemClock::monotonic() - start).count());
    if (!reply) call_failed(reply.error());
    return reply;
}

void RedisClient::call_failed(const std::string& why) {
    ++failures_;
    // A call cut short by its SMTP stage says so: Redis itself may be well,
    // only slower than listen.stage_timeout leaves time for.
    bool cut_short = stage_ran_out() && why != redis_stage_timeout;
    note_failure(cut_short ? why + " (" + redis_stage_timeout + ")" : why);
}

void RedisClient::note_failure(const std::string& why) {
    std::lock_guard lock(error_mutex_);
    last_error_ = why;
}

std::string RedisClient::last_error() const {
    std::lock_guard lock(error_mutex_);
    return last_error_;
}

Result<RedisValue> RedisClient::run(const RedisScript& script, const std::vector<std::string>& keys,
                                    const std::vector<std::string>& args) {
    std::vector<std::string> cmd{"EVALSHA", script.sha1, std::to_string(keys.size())};
    cmd.insert(cmd.end(), keys.begin(), keys.end());
    cmd.insert(cmd.end(), args.begin(), args.end());
    std::string_view route = keys.empty() ? std::string_view{} : std::string_view(keys.front());
    auto reply = command(cmd, route);
    if (reply && reply->error_code() == "NOSCRIPT") {
        cmd[0] = "EVAL";
        cmd[1] = script.body;
        reply = command(cmd, route);
    }
    // An error reply from a script (out of memory, a bug) is a failure too.
    if (reply && reply->is_error()) note_failure(reply->str);
    return reply;
}

std::size_t RedisClient::send_all(const std::vector<std::vector<std::string>>& commands,
                                  const std::vector<std::string>& routing_keys) {
    if (commands.empty()) return 0;
    std::size_t failed = 0;
    if (settings_.mode == RedisMode::cluster) {
        for (std::size_t i = 0; i < commands.size(); ++i) {
            auto reply = command(commands[i], routing_keys[i]);
            if (!reply || reply->is_error()) ++failed;
        }
        return failed;
    }
    auto start = SystemClock::monotonic();
    auto replies = stage_expired() ? Result<std::vector<RedisValue>>::failure(redis_stage_timeout)
                                   : on_master(commands, deadline());
    latency_.observe(std::chrono::duration<double>(SystemClock::monotonic() - start).count());
    if (!replies) {
        call_failed(replies.error());
        return commands.size();
    }
    for (const auto& r : *replies) failed += r.is_error() ? 1 : 0;
    return failed;
}

// --- single server and Sentinel ---

Result<std::vector<RedisValue>> RedisClient::on_master(const std::vector<std::vector<std::string>>& commands,
                                                       SteadyTime deadline) {
    using R = Result<std::vector<RedisValue>>;
    bool sentinel = settings_.mode == RedisMode::sentinel;
    std::string last = "no Redis server configured";
    // Two tries: an idle connection may be stale because the server restarted
    // or failed over since it was last used.
    for (int attempt = 0; attempt < 2; ++attempt) {
        std::shared_ptr<RedisPool> pool;
        if (sentinel) {
            auto found = master_pool(deadline);
            if (!found) return R::failure(found.error());
            pool = *found;
        } else {
            std::lock_guard lock(master_mutex_);
            pool = master_;
        }
        if (!pool) break;
        auto sent = pool->exchange(commands, deadline);
        if (!sent.sent) {
            if (sentinel) master_failed();
            return R::failure(pool->endpoint().to_string() + ": " + sent.error);
        }
        ++round_trips_;
        if (!sent.ok()) {
            if (sentinel) master_failed();
            last = pool->endpoint().to_string() + ": " + sent.error;
            if (sent.error == redis_no_reply) break;
            continue;
        }
        auto gone = std::find_if(sent.replies.begin(), sent.replies.end(), master_is_gone);
        if (sentinel && gone != sent.replies.end()) {
            master_failed();
            last = pool->endpoint().to_string() + ": " + gone->str;
            continue;
        }
        return std::move(sent.replies);
    }
    return R::failure(last);
}

Result<RedisConnection> RedisClient::open_subscriber() {
    using R = Result<RedisConnection>;
    SteadyTime until = deadline();
    std::optional<RedisEndpoint> where;
    if (settings_.mode == RedisMode::sentinel) {
        auto pool = master_pool(until);
        if (!pool) return R::failure(pool.error());
        where = (*pool)->endpoint();
    } else if (settings_.mode == RedisMode::cluster) {
        if (slots_stale_) refresh_slots(until);
        if (auto pool = pool_for_slot(0)) where = pool->endpoint();
        else if (!servers_.empty()) where = servers_.front();
    } else if (!servers_.empty()) {
        where = servers_.front();
    }
    if (!where) return R::failure("no Redis server known");
    return RedisConnection::open(*where, std::chrono::duration_cast<std::chrono::milliseconds>(settings_.connect_timeout),
                                 settings_.username, settings_.password);
}

void RedisClient::master_failed() {
    std::lock_guard lock(master_mutex_);
    master_suspect_ = true;
}

Result<std::shared_ptr<RedisPool>> RedisClient::master_pool(SteadyTime deadline) {
    using R = Result<std::shared_ptr<RedisPool>>;
    {
        std::lock_guard lock(master_mutex_);
        if (master_ && !master_suspect_) return master_;
    }
    // One thread asks the sentinels; the others keep using what is known.
    std::unique_lock discovering(discovery_mutex_, std::try_to_lock);
    auto current = [&]() -> R {
        std::lock_guard lock(master_mutex_);
        if (master_) return master_;
        return R::failure("sentinel master '" + settings_.sentinel_master + "' unknown: " + discovery_error_);
    };
    if (!discovering.owns_lock()) return current();
    {
        std::lock_guard lock(master_mutex_);
        if (master_ && !master_suspect_) return master_;
        auto now = SystemClock::monotonic();
        if (now < next_discovery_) {
            if (master_) return master_;
            return R::failure("sentinel master '" + settings_.sentinel_master + "' unknown: " + discovery_error_);
        }
        next_discovery_ = now + discovery_interval;
    }
    auto found = ask_sentinels(deadline);
    if (!found) {
        std::lock_guard lock(master_mutex_);
        discovery_error_ = found.error();
        if (master_) return master_;
        return R::failure("sentinel master '" + settings_.sentinel_master + "' unknown: " + discovery_error_);
    }
    std::shared_ptr<RedisPool> pool;
    {
        std::lock_guard lock(master_mutex_);
        pool = master_ && master_->endpoint() == *found ? master_ : make_pool(*found);
    }
    // For a while after a failure the sentinels still name the old master;
    // only a server that says it is the master is taken as one.
    auto asked = pool->exchange({{"ROLE"}}, deadline);
    if (!asked.sent) return R::failure(pool->endpoint().to_string() + ": " + asked.error);
    const RedisValue* role = asked.ok() ? &asked.replies.front() : nullptr;
    if (!role || role->type != RedisValue::Type::array || role->elements.empty() ||
        role->elements[0].str != "master") {
        std::lock_guard lock(master_mutex_);
        discovery_error_ = found->to_string() + " is not a master (yet)";
        return R::failure("sentinel master '" + settings_.sentinel_master + "': " + discovery_error_);
    }
    std::lock_guard lock(master_mutex_);
    if (master_ != pool) {
        if (master_) {
            spdlog::warn("redis: sentinel master '{}' is now {} (was {})", settings_.sentinel_master,
                         found->to_string(), master_->endpoint().to_string());
        } else {
            spdlog::info("redis: sentinel master '{}' is {}", settings_.sentinel_master, found->to_string());
        }
        master_ = pool;
    }
    master_suspect_ = false;
    discovery_error_.clear();
    return pool;
}

Result<RedisEndpoint> RedisClient::ask_sentinels(SteadyTime deadline) {
    using R = Result<RedisEndpoint>;
    std::string why = "no sentinel configured";
    for (const auto& sentinel : servers_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SystemClock::monotonic());
        if (left.count() <= 0) break;
        // Sentinels are asked without AUTH: the credentials are the master's.
        auto conn = RedisConnection::open(sentinel, std::min(left, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                       settings_.connect_timeout)),
                                          "", "");
        if (!conn) {
            why = sentinel.to_string() + ": " + conn.error();
            continue;
        }
        auto reply = conn->call({"SENTINEL", "get-master-addr-by-name", settings_.sentinel_master}, deadline);
        if (!reply) {
            why = sentinel.to_string() + ": " + reply.error();
            continue;
        }
        if (reply->type != RedisValue::Type::array || reply->elements.size() != 2) {
            why = sentinel.to_string() + ": " + (reply->is_error() ? reply->str : "does not know the master");
            continue;
        }
        auto where = RedisEndpoint::parse(reply->elements[0].str + ":" + reply->elements[1].str);
        if (!where) {
            why = sentinel.to_string() + ": malformed master address";
            continue;
        }
        return *where;
    }
    return R::failure(why);
}

// --- Cluster ---

std::shared_ptr<RedisPool> RedisClient::pool_for_locked(const RedisEndpoint& where) {
    auto& pool = pools_[where.to_string()];
    if (!pool) pool = make_pool(where);
    return pool;
}

std::shared_ptr<RedisPool> RedisClient::pool_for(const RedisEndpoint& where) {
    std::unique_lock lock(topology_mutex_);
    return pool_for_locked(where);
}

std::shared_ptr<RedisPool> RedisClient::pool_for_slot(std::uint16_t slot) {
    std::shared_lock lock(topology_mutex_);
    return slots_[slot];
}

void RedisClient::refresh_slots(SteadyTime deadline) {
    std::unique_lock refreshing(refresh_mutex_, std::try_to_lock);
    if (!refreshing.owns_lock()) return;
    auto now = SystemClock::monotonic();
    if (now < next_refresh_) return;
    next_refresh_ = now + refresh_interval;

    // Ask the nodes already known first, then the seeds.
    std::vector<RedisEndpoint> candidates;
    {
        std::shared_lock lock(topology_mutex_);
        for (const auto& [name, pool] : pools_) candidates.push_back(pool->endpoint());
    }
    for (const auto& seed : servers_) {
        if (std::find(candidates.begin(), candidates.end(), seed) == candidates.end()) candidates.push_back(seed);
    }
    for (const auto& where : candidates) {
        if (SystemClock::monotonic() >= deadline) return;
        auto pool = pool_for(where);
        auto asked = pool->exchange({{"CLUSTER", "SLOTS"}}, deadline);
        if (!asked.ok()) continue;
        auto ranges = parse_cluster_slots(asked.replies.front(), where);
        if (!ranges) {
            spdlog::debug("redis: {}: {}", where.to_string(), ranges.error());
            continue;
        }
        std::unique_lock lock(topology_mutex_);
        slots_.fill(nullptr);
        for (const auto& r : *ranges) {
            auto owner = pool_for_locked(r.master);
            for (unsigned s = r.first; s <= r.last; ++s) slots_[s] = owner;
        }
        slots_stale_ = false;
        spdlog::debug("redis: cluster slot map from {}: {} ranges", where.to_string(), ranges->size());
        return;
    }
}

Result<RedisValue> RedisClient::on_cluster(const std::vector<std::string>& args, std::string_view routing_key,
                                           SteadyTime deadline) {
    using R = Result<RedisValue>;
    std::uint16_t slot = redis_key_slot(routing_key);
    std::optional<RedisEndpoint> ask_to;
    std::string last = "no reply before the deadline";
    for (int attempt = 0; attempt < max_attempts && SystemClock::monotonic() < deadline; ++attempt) {
        if (slots_stale_) refresh_slots(deadline);
        auto pool = ask_to ? pool_for(*ask_to) : pool_for_slot(slot);
        if (!pool) {
            last = "no known node serves slot " + std::to_string(slot);
            slots_stale_ = true;
            continue;
        }
        // ASKING makes the importing node take the one command after it.
        auto sent = ask_to ? pool->exchange({{"ASKING"}, args}, deadline) : pool->exchange({args}, deadline);
        if (!sent.sent) {
            last = pool->endpoint().to_string() + ": " + sent.error;
            slots_stale_ = true;
            continue;
        }
        ++round_trips_;
        if (!sent.ok()) {
            slots_stale_ = true;
            last = pool->endpoint().to_string() + ": " + sent.error;
            if (sent.error == redis_no_reply) break;
            continue;
        }
        Result<RedisValue> reply(std::move(sent.replies.back()));
        if (auto redirect = parse_redirect(*reply)) {
            last = pool->endpoint().to_string() + ": " + reply->str;
            if (redirect->ask) {
                ask_to = redirect->to;
            } else {
                ask_to.reset();
                std::unique_lock lock(topology_mutex_);
                slots_[redirect->slot] = pool_for_locked(redirect->to);
                slots_stale_ = true;  // one slot moved: others probably did too
            }
            continue;
        }
        std::string code = reply->error_code();
        if (code == "TRYAGAIN") {
            // A slot in the middle of migrating: its keys are split for a moment.
            // It is retried until the deadline, not counted as an attempt:
            // moving one slot usually takes milliseconds.
            last = reply->str;
            --attempt;
            std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
                std::chrono::milliseconds(10), deadline - SystemClock::monotonic()));
            continue;
        }
        if (code == "CLUSTERDOWN") {
            slots_stale_ = true;
            return R::failure(pool->endpoint().to_string() + ": " + reply->str);
        }
        return reply;
    }
    return R::failure(last);
}

}  // namespace relayguard
