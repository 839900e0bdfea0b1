// The real clock behind the Clock port (clock.h): the only place outside the
// load generators that reads the system's clocks (test clock_reads).
#pragma once

#include "common/base/clock.h"

namespace relayguard {

class SystemClock final : public Clock {
public:
    TimePoint now() const override {
        return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
    }
    SteadyTime steady_now() const override { return monotonic(); }
    // The monotonic clock itself, for what waits in real time by nature:
    // socket and poll deadlines, thread waits, latency metrics. Timed logic
    // (intervals, back-offs, expiry, rate limits) takes a Clock instead, so
    // its tests move time by hand.
    static SteadyTime monotonic() { return std::chrono::steady_clock::now(); }
};

}  // namespace relayguard
