// The in-memory counter store: sliding windows, connection slots, harvest
// blocks, expiry and the bound on memory.
#include <catch2/catch.hpp>

#include "policy/memory_counter_store.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {
TimePoint t0() { return TimePoint(Duration(1'000'000'000)); }
}

TEST_CASE("message rate is a sliding window, not a clock bucket", "[store]") {
    MemoryCounterStore s;
    TimePoint now = t0();
    for (int i = 0; i < 3; ++i) REQUIRE(s.record_message("c", 1h, 3, now + std::chrono::minutes(20 * i)).has_value());
    // At 40 min three messages are in the last hour.
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 41min)->count == 3);
    // The first leaves the window exactly one hour after it was sent.
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 59min + 59s)->count == 3);
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 60min)->count == 2);
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 99min)->count == 1);
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 100min)->count == 0);
}

TEST_CASE("attempt counting records only below the limit", "[store]") {
    MemoryCounterStore s;
    for (int i = 0; i < 2; ++i) REQUIRE(s.message_rate("c", 1h, 2, true, t0())->recorded);
    auto third = s.message_rate("c", 1h, 2, true, t0());
    REQUIRE(third->count == 2);
    REQUIRE_FALSE(third->recorded);
}

TEST_CASE("connection slots are per connection id and given back", "[store]") {
    MemoryCounterStore s;
    REQUIRE(s.open_connection("c", "a", 2, t0())->admitted);
    REQUIRE(s.open_connection("c", "b", 2, t0())->held == 2);
    auto third = s.open_connection("c", "x", 2, t0());
    REQUIRE_FALSE(third->admitted);
    REQUIRE(third->held == 2);
    s.close_connection("c", "a");
    s.close_connection("c", "a");  // twice is harmless
    REQUIRE(s.open_connection("c", "x", 2, t0())->admitted);
    REQUIRE(s.open_connection("other", "y", 2, t0())->held == 1);
}

TEST_CASE("distinct unknown recipients block at the threshold", "[store]") {
    MemoryCounterStore s;
    REQUIRE(s.record_unknown_recipient("c", "a@x", 1h, 3, 1h, t0())->distinct == 1);
    // The same address again is still one.
    REQUIRE(s.record_unknown_recipient("c", "a@x", 1h, 3, 1h, t0())->distinct == 1);
    REQUIRE_FALSE(s.record_unknown_recipient("c", "b@x", 1h, 3, 1h, t0())->blocked_until);
    auto third = s.record_unknown_recipient("c", "c@x", 1h, 3, 1h, t0());
    REQUIRE(third->distinct == 3);
    REQUIRE(third->blocked_until == t0() + 1h);
    REQUIRE(s.blocked_until("c", t0() + 59min)->value() == t0() + 1h);
    REQUIRE_FALSE(s.blocked_until("c", t0() + 1h)->has_value());
    REQUIRE_FALSE(s.blocked_until("never-seen", t0())->has_value());
}

TEST_CASE("unknown recipients leave the window, and a zero block time never blocks", "[store]") {
    MemoryCounterStore s;
    s.record_unknown_recipient("c", "a@x", 10min, 2, 1h, t0());
    auto later = s.record_unknown_recipient("c", "b@x", 10min, 2, 1h, t0() + 11min);
    REQUIRE(later->distinct == 1);
    REQUIRE_FALSE(later->blocked_until);
    auto warn_only = s.record_unknown_recipient("w", "a@x", 1h, 1, Duration::zero(), t0());
    REQUIRE(warn_only->distinct == 1);
    REQUIRE_FALSE(warn_only->blocked_until);
}

TEST_CASE("unblock lifts a block and clears the count", "[store]") {
    MemoryCounterStore s;
    s.record_unknown_recipient("c", "a@x", 1h, 1, 1h, t0());
    REQUIRE(s.blocked_until("c", t0())->has_value());
    REQUIRE(s.unblock("c"));
    REQUIRE_FALSE(s.blocked_until("c", t0())->has_value());
}

TEST_CASE("memory stays bounded under a flood of new clients", "[store]") {
    MemoryCounterStore s(1000);
    s.open_connection("holder", "h", 0, t0());
    for (int i = 0; i < 20000; ++i) {
        s.record_message("ip" + std::to_string(i), 1h, 5, t0() + std::chrono::milliseconds(i));
    }
    REQUIRE(s.client_count() <= 1000);
    // A client holding a live connection is never evicted, or its slot would leak.
    REQUIRE(s.open_connection("holder", "h2", 1, t0())->held == 1);
}

TEST_CASE("a rate window keeps at most `limit` timestamps per client", "[store]") {
    MemoryCounterStore s;
    for (int i = 0; i < 1000; ++i) s.record_message("c", 1h, 10, t0() + std::chrono::milliseconds(i));
    // Only the newest ten matter for a limit of ten; older ones were dropped.
    REQUIRE(s.message_rate("c", 1h, 10, false, t0() + 1s)->count == 10);
}
