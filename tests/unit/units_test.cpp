// Sizes and durations as written in the config.
#include <catch2/catch.hpp>

#include "common/base/units.h"

using namespace relayguard;

TEST_CASE("sizes accept byte counts and binary suffixes", "[units]") {
    REQUIRE(parse_size("1024") == 1024u);
    REQUIRE(parse_size("10MB") == 10u << 20);
    REQUIRE(parse_size("10 mb") == 10u << 20);
    REQUIRE(parse_size("512k") == 512u << 10);
    REQUIRE(parse_size("2GB") == 2ull << 30);
    for (const char* bad : {"", "MB", "10XB", "-1", "1.5MB", "99999999999999999999"}) {
        INFO(bad);
        REQUIRE_FALSE(parse_size(bad));
    }
    REQUIRE_FALSE(parse_size("17179869184GB"));  // overflows 64 bits
}

TEST_CASE("durations need a unit and may combine several", "[units]") {
    using std::chrono::milliseconds;
    REQUIRE(parse_duration("500ms") == milliseconds(500));
    REQUIRE(parse_duration("90s") == milliseconds(90'000));
    REQUIRE(parse_duration("30m") == milliseconds(1'800'000));
    REQUIRE(parse_duration("1h30m") == milliseconds(5'400'000));
    REQUIRE(parse_duration("5d") == milliseconds(432'000'000));
    for (const char* bad : {"", "60", "1x", "h", "1h30", "-1s"}) {
        INFO(bad);
        REQUIRE_FALSE(parse_duration(bad));
    }
    REQUIRE(format_duration(milliseconds(5'400'000)) == "90m");
    REQUIRE(format_duration(milliseconds(3'600'000)) == "1h");
    REQUIRE(format_size(25u << 20) == "25MB");
}
