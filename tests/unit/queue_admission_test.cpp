// The relay client's queue refuses MAIL when full (by count or by free
// space), and says so at most once a minute however often it is asked.
#include <catch2/catch.hpp>

#include "delivery/queue/queue_admission.h"
#include "log_capture.h"

using namespace relayguard;
using namespace std::chrono_literals;

TEST_CASE("queue admission: full by count or by free space, logged once a minute", "[delivery][queue-admission]") {
    test::LogCapture log;
    ManualClock clock;
    QueueAdmission admission(clock);
    DeliverySettings s;
    s.queue_dir = "/var/spool/relayguard";
    s.max_queue_messages = 100;
    s.queue_min_free = 10'000'000;
    REQUIRE_FALSE(admission.refusal(s, 99, 20'000'000, 0));
    REQUIRE(admission.refusal(s, 100, 20'000'000, 0) == "100 messages queued (max_queue_messages = 100)");
    REQUIRE(log.count("MAIL refused with 452 4.3.1: 100 messages queued") == 1);
    for (int i = 0; i < 10; ++i) {
        clock.advance(5s);
        REQUIRE(admission.refusal(s, 100, 20'000'000, 0));
    }
    REQUIRE(log.count("MAIL refused") == 1);
    clock.advance(10s);  // a minute since the warning
    REQUIRE(admission.refusal(s, 101, 20'000'000, 0));
    REQUIRE(log.count("MAIL refused") == 2);

    // Free space: the floor, plus what the client declared with SIZE.
    clock.advance(1min);
    REQUIRE_FALSE(admission.refusal(s, 0, 15'000'000, 0));
    auto why = admission.refusal(s, 0, 15'000'000, 6'000'000);
    REQUIRE(why);
    REQUIRE(why->find("free in /var/spool/relayguard, needs queue_min_free") != std::string::npos);
    REQUIRE(why->find("plus SIZE") != std::string::npos);
    REQUIRE(log.count("free in /var/spool/relayguard") == 1);
    // A file system that cannot be asked does not refuse on its account.
    REQUIRE_FALSE(admission.refusal(s, 0, std::nullopt, 6'000'000));
}
