// The engine's only notion of time. Production passes the system clock; tests
// pass a ManualClock and move it by hand, so no test ever sleeps.
#pragma once

#include <atomic>
#include <chrono>

namespace relayguard {

using Duration = std::chrono::milliseconds;
// Wall-clock milliseconds: counters shared through Redis must agree across nodes.
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Duration>;

class Clock {
public:
    virtual ~Clock() = default;
    virtual TimePoint now() const = 0;
};

class ManualClock final : public Clock {
public:
    explicit ManualClock(TimePoint start = TimePoint(std::chrono::hours(24 * 365 * 50))) : now_(start.time_since_epoch().count()) {}
    TimePoint now() const override { return TimePoint(Duration(now_.load())); }
    void advance(Duration d) { now_ += d.count(); }

private:
    std::atomic<Duration::rep> now_;
};

}  // namespace relayguard
