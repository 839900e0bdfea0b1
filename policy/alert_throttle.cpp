// Alert throttling; see the header.
#include "policy/alert_throttle.h"

namespace relayguard {

const char* to_string(AlertEvent e) {
    switch (e) {
        case AlertEvent::harvest_block: return "harvest_block";
        case AlertEvent::rate_limit: return "rate_limit";
        case AlertEvent::store_lost: return "store_lost";
        case AlertEvent::login_block: return "login_block";
        case AlertEvent::account_attack: return "account_attack";
        case AlertEvent::account_compromised: return "account_compromised";
    }
    return "?";
}

std::optional<AlertEvent> alert_event_from(std::string_view name) {
    for (auto e : {AlertEvent::harvest_block, AlertEvent::rate_limit, AlertEvent::store_lost, AlertEvent::login_block,
                   AlertEvent::account_attack, AlertEvent::account_compromised}) {
        if (name == to_string(e)) return e;
    }
    return std::nullopt;
}

bool AlertSettings::wants(AlertEvent e) const {
    if (recipients.empty()) return false;
    for (const auto& name : events) {
        if (name == to_string(e)) return true;
    }
    return false;
}

std::optional<std::uint64_t> AlertThrottle::admit(AlertEvent event, const std::string& key, TimePoint now) {
    // Forget what no longer holds anything back, oldest first, so an attack
    // from many addresses grows the map only as far as one interval holds.
    while (!order_.empty() && now - order_.front().first >= interval_) drop_oldest();
    while (!sent_.empty() && now - sent_.front() >= std::chrono::hours(1)) sent_.pop_front();

    auto k = std::make_pair(event, key);
    auto it = last_.find(k);
    if (it != last_.end() && now - it->second < interval_) {
        // The same news again: the admin already has it.
        return std::nullopt;
    }
    bool about_client = event != AlertEvent::store_lost;
    last_[k] = now;
    order_.emplace_back(now, k);
    // order_ holds every entry of last_ (and a few stale ones after forget),
    // so bounding it bounds both.
    while (order_.size() > max_keys_) drop_oldest();
    if (about_client && sent_.size() >= max_per_hour_) {
        ++held_back_;  // held back once is enough; not counted again each refusal
        return std::nullopt;
    }
    if (about_client) sent_.push_back(now);
    auto held = held_back_;
    held_back_ = 0;
    return held;
}

void AlertThrottle::drop_oldest() {
    auto it = last_.find(order_.front().second);
    if (it != last_.end() && it->second == order_.front().first) last_.erase(it);
    order_.pop_front();
}

void AlertThrottle::forget(AlertEvent event, const std::string& key) { last_.erase({event, key}); }

}  // namespace relayguard
