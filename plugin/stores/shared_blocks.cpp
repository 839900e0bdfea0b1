// Harvest blocks heard on a Redis channel; see the header.
#include "plugin/stores/shared_blocks.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

#include "common/base/system_clock.h"

namespace relayguard {

namespace {

// How often the subscriber looks up from its socket to see whether it must stop.
constexpr std::chrono::milliseconds poll_interval{200};
constexpr std::chrono::milliseconds first_backoff{100};
constexpr std::chrono::milliseconds max_backoff{2000};

}  // namespace

SharedBlocks::SharedBlocks(RedisClient& redis, std::string channel, Fetch fetch)
    : redis_(redis), channel_(std::move(channel)), fetch_(std::move(fetch)) {
    subscriber_ = std::thread([this] { run(); });
}

SharedBlocks::~SharedBlocks() {
    {
        std::lock_guard lock(stop_mutex_);
        stopping_ = true;
    }
    stop_.notify_all();
    subscriber_.join();
}

std::string SharedBlocks::message(const std::string& client, long long until_ms, GuessKind kind) {
    return std::to_string(until_ms) + " " + client + (kind == GuessKind::failed_login ? " 1" : " 0");
}

void SharedBlocks::note(const std::string& client, std::optional<ClientBlock> block) {
    std::lock_guard lock(mutex_);
    if (!block) {
        blocks_.erase(client);
        return;
    }
    if (blocks_.size() >= max_blocks && !blocks_.count(client)) {
        auto soonest = std::min_element(blocks_.begin(), blocks_.end(),
                                        [](const auto& a, const auto& b) { return a.second.until < b.second.until; });
        blocks_.erase(soonest);
    }
    blocks_[client] = *block;
}

Lookup<ClientBlock> SharedBlocks::lookup(const std::string& client, TimePoint now) {
    if (!live_) return Lookup<ClientBlock>::failure("not subscribed to the block channel");
    std::lock_guard lock(mutex_);
    auto it = blocks_.find(client);
    if (it == blocks_.end()) return std::optional<ClientBlock>{};
    if (it->second.until <= now) {
        blocks_.erase(it);
        return std::optional<ClientBlock>{};
    }
    return std::optional<ClientBlock>{it->second};
}

void SharedBlocks::apply(const std::string& payload) {
    auto space = payload.find(' ');
    if (space == std::string::npos || space + 1 >= payload.size()) return;
    long long until = 0;
    auto [end, ec] = std::from_chars(payload.data(), payload.data() + space, until);
    if (ec != std::errc{} || end != payload.data() + space) return;
    std::string client = payload.substr(space + 1);
    GuessKind kind = GuessKind::unknown_recipient;
    // A client key holds no space; a node of an older release sends no kind.
    if (auto last = client.rfind(' '); last != std::string::npos) {
        if (client.substr(last + 1) == "1") kind = GuessKind::failed_login;
        client.resize(last);
    }
    if (client.empty()) return;
    note(client, until > 0 ? std::optional<ClientBlock>(ClientBlock{TimePoint(Duration(until)), kind}) : std::nullopt);
}

void SharedBlocks::recheck() {
    std::vector<std::string> clients;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [client, block] : blocks_) clients.push_back(client);
    }
    for (const auto& client : clients) {
        auto block = fetch_(client);
        if (block) note(client, *block);
    }
}

bool SharedBlocks::subscribed(RedisConnection& conn) {
    auto ack = conn.call({"SUBSCRIBE", channel_}, SystemClock::monotonic() + std::chrono::seconds(2));
    if (!ack || ack->is_error()) {
        spdlog::warn("redis: cannot subscribe to {}: {}", channel_, ack ? ack->str : ack.error());
        return false;
    }
    recheck();
    live_ = true;
    spdlog::debug("redis: subscribed to {}", channel_);
    while (!stopping_) {
        auto push = conn.next_push(poll_interval);
        if (!push) {
            spdlog::warn("redis: subscription to {} lost ({}); RCPT asks Redis for blocks until it is back", channel_,
                         push.error());
            break;
        }
        const auto& v = *push;
        if (!v || v->type != RedisValue::Type::array || v->elements.size() != 3) continue;
        if (v->elements[0].str == "message") apply(v->elements[2].str);
    }
    live_ = false;
    return true;
}

void SharedBlocks::run() {
    auto backoff = first_backoff;
    while (!stopping_) {
        auto conn = redis_.open_subscriber();
        // After a subscription that worked, the next try comes soon again.
        if (conn && subscribed(*conn)) backoff = first_backoff;
        std::unique_lock lock(stop_mutex_);
        stop_.wait_for(lock, backoff, [this] { return stopping_.load(); });
        backoff = std::min(backoff * 2, max_backoff);
    }
}

}  // namespace relayguard
