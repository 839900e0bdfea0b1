// The real clock behind the Clock port (clock.h): the only place outside the
// load generators that reads the system's clocks.
#pragma once

#include "common/base/clock.h"

namespace relayguard {

class SystemClock final : public Clock {
public:
    TimePoint now() const override {
        return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
    }
    SteadyTime steady_now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace relayguard
