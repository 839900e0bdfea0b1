// The deadline of the SMTP stage the current thread is answering
// (listen.stage_timeout): a front end opens a StageDeadline around its
// engine call, and the I/O behind the engine's ports (Redis, DNS) waits no
// longer than it, whatever its own timeouts allow.
//
// Why a thread-local and not a parameter: the engine is synchronous and
// calls its ports on the front end's own thread, so the thread is the
// stage. Passing a deadline through the pure engine would put an I/O
// concern into every rule and port signature; the engine would only carry
// it along. Threads that answer no stage (background flushers, the relay
// client) have no deadline and keep their own timeouts.
#pragma once

#include "common/base/system_clock.h"

#include <chrono>

namespace relayguard {

using StageClock = std::chrono::steady_clock;

// Sets the current thread's stage deadline for its lifetime. A nested scope
// can only shorten it (the earliest deadline wins); the destructor restores
// what was there before.
class StageDeadline {
public:
    explicit StageDeadline(StageClock::time_point until);
    ~StageDeadline();
    StageDeadline(const StageDeadline&) = delete;
    StageDeadline& operator=(const StageDeadline&) = delete;

    // Convenience for a front end: a scope ending `timeout` from now.
    static StageClock::time_point from_now(StageClock::duration timeout) { return SystemClock::monotonic() + timeout; }

private:
    StageClock::time_point saved_;
};

// min(fallback, the current stage's deadline); `fallback` alone outside a stage.
StageClock::time_point stage_deadline_or(StageClock::time_point fallback);

// Whether the current thread is in a stage whose deadline has passed.
bool stage_expired();

// Whether the current thread is answering an SMTP stage at all: a call it
// makes is one the client waits for.
bool in_stage();

}  // namespace relayguard
