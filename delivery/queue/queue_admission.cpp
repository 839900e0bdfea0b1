// Whether the queue takes another message (see the header).
#include "delivery/queue/queue_admission.h"

#include <spdlog/spdlog.h>

#include "common/base/units.h"

namespace relayguard {

std::optional<std::string> QueueAdmission::refusal(const DeliverySettings& s, std::size_t queued,
                                                   std::optional<std::uint64_t> free_bytes,
                                                   std::uint64_t declared_size) {
    std::optional<std::string> why;
    if (queued >= s.max_queue_messages) {
        why = std::to_string(queued) + " messages queued (max_queue_messages = " +
              std::to_string(s.max_queue_messages) + ")";
    } else if (free_bytes && *free_bytes < s.queue_min_free + declared_size) {
        why = format_size(*free_bytes) + " free in " + s.queue_dir + ", needs queue_min_free = " +
              format_size(s.queue_min_free) + (declared_size ? " plus SIZE " + format_size(declared_size) : "");
    }
    if (!why) return why;
    std::lock_guard lock(mutex_);
    auto now = clock_.steady_now();
    if (!last_warning_ || now - *last_warning_ >= std::chrono::minutes(1)) {
        last_warning_ = now;
        spdlog::warn("intake: MAIL refused with 452 4.3.1: {}", *why);
    }
    return why;
}

}  // namespace relayguard
