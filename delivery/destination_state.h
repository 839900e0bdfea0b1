// Per-destination circuit breaker: after a destination (a smart host, or a
// recipient domain's MX set) fails to take a connection, its messages wait
// until it is due again instead of hammering it, and the rest of the queue
// goes on. The state is kept in the queue directory, so a restart does not
// forget a dead host.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/base/clock.h"
#include "delivery/delivery_settings.h"

namespace relayguard {

// The domain of an address, lower-cased ("" without an @).
std::string recipient_domain(const std::string& address);

// The circuit breaker's key for mail to `domain`: "smarthost" when all mail
// goes through the smart hosts, else "mx:" and the domain.
std::string destination_key(const DeliverySettings& settings, const std::string& domain);

class DestinationState {
public:
    explicit DestinationState(std::string file);  // loads what the file holds
    // When the destination may be tried again, if it is resting now.
    std::optional<TimePoint> resting_until(const std::string& destination, TimePoint now);
    // A failure to connect (or to be served): rest for min·2^(n-1), at most max.
    TimePoint failed(const std::string& destination, TimePoint now, Duration min, Duration max);
    void succeeded(const std::string& destination);
    // `queue flush`: the rest ends now and the failures are forgotten, as
    // Postfix's `postqueue -f` forgets dead destinations. Answers when the
    // rest would have ended, if it was resting.
    std::optional<TimePoint> end_rest(const std::string& destination, TimePoint now);

private:
    struct Entry {
        std::uint32_t failures = 0;
        TimePoint until{};
    };
    // mutex_ held. The file is read again when another process changed it
    // (`relayguard-relayd queue flush` while relayd runs), so a rest it
    // ended is ended here too.
    void load_if_changed();
    void save();

    const std::string file_;
    std::mutex mutex_;
    std::map<std::string, Entry> entries_;
    std::string seen_;  // the file's inode, mtime and size when last read or written
};

// Postfix's retry rule: wait as long as the message has already waited,
// but at least `min` and at most `max`.
Duration retry_delay(Duration age, Duration min, Duration max);

}  // namespace relayguard
