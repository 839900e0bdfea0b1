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

std::string SharedBlocks::message(const std::string& client, long long until_ms) {
    return std::to_string(until_ms) + " " + client;
}

void SharedBlocks::note(const std::string& client, std::optional<ClientBlock> block) { remember(client, block, true); }

void SharedBlocks::remember(const std::string& client, std::optional<ClientBlock> block, bool kind_known) {
    std::lock_guard lock(mutex_);
    if (!block) {
        blocks_.erase(client);
        return;
    }
    if (blocks_.size() >= max_blocks && !blocks_.count(client)) {
        auto soonest = std::min_element(blocks_.begin(), blocks_.end(),
                                        [](const auto& a, const auto& b) { return a.second.block.until < b.second.block.until; });
        blocks_.erase(soonest);
    }
    blocks_[client] = Known{*block, kind_known};
}

Lookup<ClientBlock> SharedBlocks::lookup(const std::string& client, TimePoint now) {
    if (!live_) return Lookup<ClientBlock>::failure("not subscribed to the block channel");
    std::lock_guard lock(mutex_);
    auto it = blocks_.find(client);
    if (it == blocks_.end()) return std::optional<ClientBlock>{};
    if (it->second.block.until <= now) {
        blocks_.erase(it);
        return std::optional<ClientBlock>{};
    }
    if (!it->second.kind_known) return Lookup<ClientBlock>::failure("the block's kind is not known yet");
    return std::optional<ClientBlock>{it->second.block};
}

void SharedBlocks::apply(const std::string& payload) {
    auto space = payload.find(' ');
    if (space == std::string::npos || space + 1 >= payload.size()) return;
    long long until = 0;
    auto [end, ec] = std::from_chars(payload.data(), payload.data() + space, until);
    if (ec != std::errc{} || end != payload.data() + space) return;
    std::string client = payload.substr(space + 1);
    if (until <= 0) {
        note(client, std::nullopt);
        return;
    }
    // The kind is not in the message: the first lookup asks Redis for it.
    remember(client, ClientBlock{TimePoint(Duration(until)), GuessKind::unknown_recipient}, false);
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
