// Alert throttling; see the header.
#include "policy/alert_throttle.h"

namespace relayguard {

const char* to_string(AlertEvent e) {
    switch (e) {
        case AlertEvent::harvest_block: return "harvest_block";
        case AlertEvent::rate_limit: return "rate_limit";
        case AlertEvent::store_lost: return "store_lost";
    }
    return "?";
}

std::optional<AlertEvent> alert_event_from(std::string_view name) {
    for (auto e : {AlertEvent::harvest_block, AlertEvent::rate_limit, AlertEvent::store_lost}) {
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
    // Forget what no longer holds anything back, so an attack from many
    // addresses cannot grow the map without bound.
    if (last_.size() > 10000) {
        for (auto it = last_.begin(); it != last_.end();) it = now - it->second >= interval_ ? last_.erase(it) : ++it;
    }
    while (!sent_.empty() && now - sent_.front() >= std::chrono::hours(1)) sent_.pop_front();

    auto k = std::make_pair(event, key);
    auto it = last_.find(k);
    if (it != last_.end() && now - it->second < interval_) {
        // The same news again: the admin already has it.
        return std::nullopt;
    }
    bool about_client = event != AlertEvent::store_lost;
    if (about_client && sent_.size() >= max_per_hour_) {
        ++held_back_;
        last_[k] = now;  // held back once is enough; not counted again each refusal
        return std::nullopt;
    }
    last_[k] = now;
    if (about_client) sent_.push_back(now);
    auto held = held_back_;
    held_back_ = 0;
    return held;
}

}  // namespace relayguard
