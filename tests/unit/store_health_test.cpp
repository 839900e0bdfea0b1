// The store's health as the admin meets it: one alert when Redis is lost,
// a reminder at most once a minute while it stays lost, one line when it is
// back, with how long it lasted. Time moves by hand.
#include <catch2/catch.hpp>

#include "log_capture.h"
#include "plugin/stores/store_failover.h"

using namespace relayguard;
using namespace std::chrono_literals;

TEST_CASE("store health: lost once, reminded once a minute, back with how long it lasted", "[store-health]") {
    test::LogCapture log;
    ManualClock clock;
    std::vector<std::string> events;
    StoreHealth health("redis single 127.0.0.1:6379", true, [] { return "connection refused"; }, clock);
    health.on_change([&](bool lost, const std::string&, const std::string& why) {
        events.push_back(lost ? "lost: " + why : "back");
    });
    health.succeeded();
    REQUIRE(log.count("answered; counting in Redis") == 1);
    REQUIRE_FALSE(health.degraded());

    health.failed();
    REQUIRE(health.degraded());
    REQUIRE(events == std::vector<std::string>{"lost: connection refused"});
    REQUIRE(log.count("unreachable (connection refused); store.fail_mode = open") == 1);
    // Every further failure within the minute is counted, not said.
    for (int i = 0; i < 5; ++i) {
        clock.advance(10s);
        health.failed();
    }
    REQUIRE(log.count("still unreachable") == 0);
    clock.advance(10s);  // 60 s since it was lost
    health.failed();
    REQUIRE(log.count("still unreachable after 60 s, 7 calls failed (connection refused)") == 1);
    clock.advance(59s);
    health.failed();
    REQUIRE(log.count("still unreachable") == 1);
    clock.advance(1s);
    health.failed();
    REQUIRE(log.count("still unreachable after 120 s, 9 calls failed") == 1);
    REQUIRE(events.size() == 1);  // no second alert during one outage

    clock.advance(30s);
    health.succeeded();
    REQUIRE_FALSE(health.degraded());
    REQUIRE(events.back() == "back");
    REQUIRE(log.count("reachable again after 150 s (9 calls failed)") == 1);
    health.succeeded();
    REQUIRE(events.size() == 2);
}

TEST_CASE("store health: fail mode tempfail says limited stages get 4xx", "[store-health]") {
    test::LogCapture log;
    ManualClock clock;
    StoreHealth health("redis", false, [] { return "timeout"; }, clock);
    health.failed();
    REQUIRE(log.count("store.fail_mode = tempfail: limited SMTP stages get 4xx") == 1);
    REQUIRE_FALSE(health.fail_open());
}
