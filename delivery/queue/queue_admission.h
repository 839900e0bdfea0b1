// Whether the relay client's queue takes another message, asked at MAIL: not
// when it holds delivery.max_queue_messages, nor when its file system has
// less than delivery.queue_min_free left (plus the SIZE the client
// declared). The client then gets 452 4.3.1 and tries later. The refusal is
// logged at most once a minute: a full queue is asked at every MAIL.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "common/base/clock.h"
#include "delivery/delivery_settings.h"

namespace relayguard {

class QueueAdmission {
public:
    explicit QueueAdmission(const Clock& clock) : clock_(clock) {}

    // Why the queue cannot take the message, or std::nullopt when it can.
    // `free_bytes` is std::nullopt when the file system could not be asked.
    std::optional<std::string> refusal(const DeliverySettings& s, std::size_t queued,
                                       std::optional<std::uint64_t> free_bytes, std::uint64_t declared_size);

private:
    const Clock& clock_;
    std::mutex mutex_;
    std::optional<SteadyTime> last_warning_;
};

}  // namespace relayguard
