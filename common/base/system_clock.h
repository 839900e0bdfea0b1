// The real clock behind the engine's Clock port. Wall-clock time, because
// counters shared through Redis must agree between nodes.
#pragma once

#include "policy/clock.h"

namespace relayguard {

class SystemClock final : public Clock {
public:
    TimePoint now() const override {
        return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
    }
};

}  // namespace relayguard
