// The current stage's deadline, one per thread; see the header.
#include "common/base/stage_deadline.h"

#include <algorithm>

#include "common/base/system_clock.h"

namespace relayguard {

namespace {
// time_point::max() stands for "no stage": min() with it changes nothing.
thread_local StageClock::time_point t_stage_deadline = StageClock::time_point::max();
}  // namespace

StageDeadline::StageDeadline(StageClock::time_point until) : saved_(t_stage_deadline) {
    t_stage_deadline = std::min(saved_, until);
}

StageDeadline::~StageDeadline() { t_stage_deadline = saved_; }

StageClock::time_point stage_deadline_or(StageClock::time_point fallback) {
    return std::min(fallback, t_stage_deadline);
}

bool stage_expired() {
    return t_stage_deadline != StageClock::time_point::max() && SystemClock::monotonic() >= t_stage_deadline;
}

bool in_stage() { return t_stage_deadline != StageClock::time_point::max(); }

}  // namespace relayguard
