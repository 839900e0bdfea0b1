// Per-destination circuit breaker: after a destination (a smart host, or a
// recipient domain's MX set) fails to take a connection, its messages wait
// until it is due again instead of hammering it, and the rest of the queue
// goes on. The state is kept in the queue directory, so a restart does not
// forget a dead host.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/base/clock.h"

namespace relayguard {

class DestinationState {
public:
    explicit DestinationState(std::string file);  // loads what the file holds
    // When the destination may be tried again, if it is resting now.
    std::optional<TimePoint> resting_until(const std::string& destination, TimePoint now);
    // A failure to connect (or to be served): rest for min·2^(n-1), at most max.
    TimePoint failed(const std::string& destination, TimePoint now, Duration min, Duration max);
    void succeeded(const std::string& destination);

private:
    struct Entry {
        std::uint32_t failures = 0;
        TimePoint until{};
    };
    void save();  // mutex_ held

    const std::string file_;
    std::mutex mutex_;
    std::map<std::string, Entry> entries_;
};

// Postfix's retry rule: wait as long as the message has already waited,
// but at least `min` and at most `max`.
Duration retry_delay(Duration age, Duration min, Duration max);

}  // namespace relayguard
