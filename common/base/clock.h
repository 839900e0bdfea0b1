// Time, read only through this port. Production passes SystemClock; tests
// pass a ManualClock and move it by hand, so no test sleeps for time to pass.
// Two kinds, as Envoy's TimeSource has them: wall time for what is shared
// or shown (counters in Redis must agree across nodes, dates in reports),
// and monotonic time for deadlines, timeouts and rates, which a wall clock
// stepped by NTP must not stretch or shrink.
#pragma once

#include <atomic>
#include <chrono>

namespace relayguard {

using Duration = std::chrono::milliseconds;
// Wall-clock milliseconds.
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Duration>;
// Monotonic time, for deadlines.
using SteadyTime = std::chrono::steady_clock::time_point;

class Clock {
public:
    virtual ~Clock() = default;
    virtual TimePoint now() const = 0;
    virtual SteadyTime steady_now() const = 0;
};

// Both kinds of time, moved together by hand.
class ManualClock final : public Clock {
public:
    explicit ManualClock(TimePoint start = TimePoint(std::chrono::hours(24 * 365 * 50)))
        : now_(start.time_since_epoch().count()) {}
    TimePoint now() const override { return TimePoint(Duration(now_.load())); }
    SteadyTime steady_now() const override { return SteadyTime(std::chrono::milliseconds(steady_.load())); }
    void advance(Duration d) {
        now_ += d.count();
        steady_ += d.count();
    }

private:
    std::atomic<Duration::rep> now_;
    std::atomic<Duration::rep> steady_{1'000'000};
};

}  // namespace relayguard
