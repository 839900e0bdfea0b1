// The alert throttle: what reaches the admin when a client keeps being
// refused, when many clients are, and when the store comes and goes.
#include <catch2/catch.hpp>

#include "policy/alert_throttle.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {
TimePoint at(Duration d) { return TimePoint(Duration(1'700'000'000'000)) + d; }
}  // namespace

TEST_CASE("one alert per client and event in the interval", "[alerts]") {
    AlertThrottle t(1h, 20);
    REQUIRE(t.admit(AlertEvent::harvest_block, "192.0.2.7", at(0s)) == std::uint64_t{0});
    // The same client refused again and again: the admin already knows.
    for (int i = 1; i < 50; ++i) REQUIRE_FALSE(t.admit(AlertEvent::harvest_block, "192.0.2.7", at(Duration(i * 1000))));
    // Another event about it, or another client, is news.
    REQUIRE(t.admit(AlertEvent::rate_limit, "192.0.2.7", at(60s)));
    REQUIRE(t.admit(AlertEvent::harvest_block, "192.0.2.8", at(60s)));
    // After the interval the same news may go again.
    REQUIRE(t.admit(AlertEvent::harvest_block, "192.0.2.7", at(1h)));
}

TEST_CASE("at most max_per_hour alerts about clients, the rest counted in the next", "[alerts]") {
    AlertThrottle t(1h, 3);
    for (int i = 0; i < 3; ++i) REQUIRE(t.admit(AlertEvent::harvest_block, "10.0.0." + std::to_string(i), at(0s)));
    for (int i = 3; i < 10; ++i) REQUIRE_FALSE(t.admit(AlertEvent::harvest_block, "10.0.0." + std::to_string(i), at(1s)));
    // A client held back once is not counted twice for its next refusal.
    REQUIRE_FALSE(t.admit(AlertEvent::harvest_block, "10.0.0.5", at(2s)));
    // The store is not about a client: never capped.
    REQUIRE(t.admit(AlertEvent::store_lost, "lost", at(3s)) == std::uint64_t{7});
    // An hour after the first three, room again; nothing more was held back.
    REQUIRE(t.admit(AlertEvent::rate_limit, "10.0.0.99", at(3600s)) == std::uint64_t{0});
}

TEST_CASE("alert settings: events by name, none without recipients", "[alerts]") {
    AlertSettings s;
    REQUIRE_FALSE(s.wants(AlertEvent::harvest_block));
    s.recipients = {"postmaster@example.test"};
    REQUIRE(s.wants(AlertEvent::harvest_block));
    s.events = {"store_lost"};
    REQUIRE_FALSE(s.wants(AlertEvent::rate_limit));
    REQUIRE(s.wants(AlertEvent::store_lost));
    REQUIRE(alert_event_from("rate_limit") == AlertEvent::rate_limit);
    REQUIRE_FALSE(alert_event_from("flood"));
}

TEST_CASE("the store lost again after it came back is told again", "[alerts]") {
    AlertThrottle t(1h, 20);
    REQUIRE(t.admit(AlertEvent::store_lost, "lost", at(0s)));
    t.forget(AlertEvent::store_lost, "back");
    REQUIRE(t.admit(AlertEvent::store_lost, "back", at(10s)));
    REQUIRE_FALSE(t.admit(AlertEvent::store_lost, "lost", at(20s)));
    t.forget(AlertEvent::store_lost, "lost");
    REQUIRE(t.admit(AlertEvent::store_lost, "lost", at(20s)));
}

TEST_CASE("an entry expires after the interval: the client is news again", "[alerts]") {
    AlertThrottle t(1min, 100000);
    for (int i = 0; i < 5000; ++i) REQUIRE(t.admit(AlertEvent::rate_limit, "c" + std::to_string(i), at(Duration(i * 100))));
    // Client c0 was seen 500 s ago, longer than the interval: news again.
    REQUIRE(t.admit(AlertEvent::rate_limit, "c0", at(500s)));
    // c4999 was seen 100 ms ago: not.
    REQUIRE_FALSE(t.admit(AlertEvent::rate_limit, "c4999", at(Duration(4999 * 100 + 100))));
}

TEST_CASE("a million clients in one interval do not grow the throttle past its bound, and recent ones stay throttled",
          "[alerts]") {
    AlertThrottle t(1h, 20, 10000);
    const int clients = 1'000'000;
    // One refusal a millisecond from a million addresses: 17 minutes, well
    // inside the interval, so nothing expires on its own.
    for (int i = 0; i < clients; ++i) {
        t.admit(AlertEvent::harvest_block, "2001:db8:" + std::to_string(i), at(std::chrono::milliseconds(i)));
        if (i % 100000 == 0) REQUIRE(t.remembered() <= 10000);
    }
    REQUIRE(t.remembered() <= 10000);
    // The most recent clients are still remembered: refused again, no alert,
    // and not counted as held back a second time.
    for (int i = clients - 1000; i < clients; ++i) {
        REQUIRE_FALSE(t.admit(AlertEvent::harvest_block, "2001:db8:" + std::to_string(i), at(std::chrono::milliseconds(clients + 1))));
    }
    // 20 alerts went; every other client was held back exactly once.
    REQUIRE(t.admit(AlertEvent::store_lost, "lost", at(std::chrono::milliseconds(clients + 2))) ==
            std::uint64_t{clients - 20});
    REQUIRE(t.remembered() <= 10000);
}
