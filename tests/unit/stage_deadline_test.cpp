// The stage deadline a front end sets around an engine call: the earliest of
// nested scopes wins, each scope restores what it found, and one thread's
// stage never bounds another thread's I/O.
#include <catch2/catch.hpp>

#include <thread>

#include "common/base/stage_deadline.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {
const StageClock::time_point far_away = StageClock::now() + 24h;
}  // namespace

TEST_CASE("outside a stage the fallback is the deadline", "[stage_deadline]") {
    auto fallback = StageClock::now() + 5s;
    REQUIRE(stage_deadline_or(fallback) == fallback);
    REQUIRE_FALSE(stage_expired());
}

TEST_CASE("a stage's deadline bounds a later fallback, not an earlier one", "[stage_deadline]") {
    auto until = StageClock::now() + 1s;
    StageDeadline stage(until);
    REQUIRE(stage_deadline_or(far_away) == until);
    auto sooner = StageClock::now() + 10ms;
    REQUIRE(stage_deadline_or(sooner) == sooner);
    REQUIRE_FALSE(stage_expired());
}

TEST_CASE("nested stages keep the earliest deadline, and each restores what it found", "[stage_deadline]") {
    auto outer_until = StageClock::now() + 1s;
    StageDeadline outer(outer_until);
    {
        auto inner_until = outer_until - 500ms;
        StageDeadline inner(inner_until);
        REQUIRE(stage_deadline_or(far_away) == inner_until);
        {
            StageDeadline later(outer_until + 1h);  // cannot lengthen the stage
            REQUIRE(stage_deadline_or(far_away) == inner_until);
        }
        REQUIRE(stage_deadline_or(far_away) == inner_until);
    }
    REQUIRE(stage_deadline_or(far_away) == outer_until);
}

TEST_CASE("the last scope's end leaves no deadline behind", "[stage_deadline]") {
    { StageDeadline stage(StageClock::now() + 1s); }
    REQUIRE(stage_deadline_or(far_away) == far_away);
}

TEST_CASE("a passed deadline is expired", "[stage_deadline]") {
    StageDeadline stage(StageClock::now() - 1ms);
    REQUIRE(stage_expired());
    REQUIRE(stage_deadline_or(far_away) < StageClock::now());
}

TEST_CASE("each thread has its own stage", "[stage_deadline]") {
    auto until = StageClock::now() + 1s;
    StageDeadline mine(until);
    StageClock::time_point seen_there{};
    StageClock::time_point seen_in_its_stage{};
    auto its_until = StageClock::now() + 2s;
    std::thread other([&] {
        seen_there = stage_deadline_or(far_away);
        StageDeadline its(its_until);
        seen_in_its_stage = stage_deadline_or(far_away);
    });
    other.join();
    REQUIRE(seen_there == far_away);          // this thread's stage is not its
    REQUIRE(seen_in_its_stage == its_until);  // nor is this one bounded by it
    REQUIRE(stage_deadline_or(far_away) == until);
}
