// Which alerts to the admin go out, so that an attack does not become a
// mail flood: one alert per event and client every per_client_interval, and
// at most max_per_hour alerts about clients in any hour. What is held back
// is counted and said in the next alert that goes. Losing the store is not
// about a client: only the interval holds it back, never the hourly cap, so
// an outage is always told.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"

namespace relayguard {

enum class AlertEvent { harvest_block, rate_limit, store_lost, login_block, account_attack, account_compromised };

// "harvest_block", "rate_limit", "store_lost", "login_block", "account_attack", "account_compromised"
const char* to_string(AlertEvent e);
std::optional<AlertEvent> alert_event_from(std::string_view name);

struct AlertSettings {
    std::vector<std::string> recipients;  // none: no alerts
    std::vector<std::string> events{"harvest_block", "rate_limit",     "store_lost",
                                    "login_block",   "account_attack", "account_compromised"};
    std::string sender;                    // "" = relayguard@<host name>
    std::string submit = "127.0.0.1:10025";  // the relay client's intake
    Duration per_client_interval = std::chrono::hours(1);
    std::uint32_t max_per_hour = 20;

    bool wants(AlertEvent e) const;
};

class AlertThrottle {
public:
    // The clients remembered at once. An attack from a million addresses
    // within one interval must not grow the map a million entries: past the
    // bound the client seen longest ago is forgotten first. A forgotten
    // client may be alerted about again early, which the hourly cap still
    // bounds, or be counted twice as held back.
    static constexpr std::size_t default_max_keys = 10000;

    AlertThrottle(Duration per_key_interval, std::uint32_t max_per_hour, std::size_t max_keys = default_max_keys)
        : interval_(per_key_interval), max_per_hour_(max_per_hour), max_keys_(std::max<std::size_t>(max_keys, 1)) {}

    // Whether an alert of `event` about `key` (a client, or "" for the
    // store) may go now. When it may, the answer is how many alerts were
    // held back since the last one went.
    std::optional<std::uint64_t> admit(AlertEvent event, const std::string& key, TimePoint now);
    // Makes the next alert of `event` about `key` news again (the store
    // lost after it came back is a new outage, however soon).
    void forget(AlertEvent event, const std::string& key);
    // Event and key pairs remembered now (never more than max_keys).
    std::size_t remembered() const { return last_.size(); }

private:
    void drop_oldest();

    using Key = std::pair<AlertEvent, std::string>;
    const Duration interval_;
    const std::uint32_t max_per_hour_;
    const std::size_t max_keys_;
    std::map<Key, TimePoint> last_;
    std::deque<std::pair<TimePoint, Key>> order_;  // last_'s entries by age, to expire them in O(1) each
    std::deque<TimePoint> sent_;  // client alerts of the last hour
    std::uint64_t held_back_ = 0;
};

}  // namespace relayguard
