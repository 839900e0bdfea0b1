// IP address and CIDR parsing and matching.
#include <catch2/catch.hpp>

#include "policy/ip_address.h"

using relayguard::Cidr;
using relayguard::IpAddress;

TEST_CASE("IPv4 addresses parse and print", "[ip]") {
    REQUIRE(IpAddress::parse("192.0.2.7")->to_string() == "192.0.2.7");
    REQUIRE(IpAddress::parse("[192.0.2.7]")->to_string() == "192.0.2.7");
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "1..2.3"}) {
        INFO(bad);
        REQUIRE_FALSE(IpAddress::parse(bad));
    }
}

TEST_CASE("IPv6 addresses parse to canonical RFC 5952 text", "[ip]") {
    REQUIRE(IpAddress::parse("2001:DB8:0:0:0:0:0:1")->to_string() == "2001:db8::1");
    REQUIRE(IpAddress::parse("::1")->to_string() == "::1");
    REQUIRE(IpAddress::parse("::")->to_string() == "::");
    REQUIRE(IpAddress::parse("IPv6:2001:db8::5")->to_string() == "2001:db8::5");
    REQUIRE(IpAddress::parse("fe80::1%eth0")->to_string() == "fe80::1");
    REQUIRE(IpAddress::parse("2001:db8:0:1:0:0:1:1")->to_string() == "2001:db8:0:1::1:1");
    for (const char* bad : {":::", "1:2:3:4:5:6:7:8:9", "2001:db8::1::2", "12345::", "g::1", "1:2:3:4:5:6:7"}) {
        INFO(bad);
        REQUIRE_FALSE(IpAddress::parse(bad));
    }
}

TEST_CASE("IPv4-mapped IPv6 is the same client as its IPv4 address", "[ip]") {
    auto mapped = IpAddress::parse("::ffff:192.0.2.7");
    REQUIRE(mapped->is_v4());
    REQUIRE(*mapped == *IpAddress::parse("192.0.2.7"));
    REQUIRE(Cidr::parse("::ffff:192.0.2.0/120")->contains(*IpAddress::parse("192.0.2.200")));
}

TEST_CASE("CIDR matching at the edges of the network", "[ip]") {
    auto net = Cidr::parse("192.0.2.64/26");
    REQUIRE(net);
    REQUIRE(net->contains(*IpAddress::parse("192.0.2.64")));
    REQUIRE(net->contains(*IpAddress::parse("192.0.2.127")));
    REQUIRE_FALSE(net->contains(*IpAddress::parse("192.0.2.63")));
    REQUIRE_FALSE(net->contains(*IpAddress::parse("192.0.2.128")));

    auto v6 = Cidr::parse("2001:db8:1::/48");
    REQUIRE(v6->contains(*IpAddress::parse("2001:db8:1:ffff::1")));
    REQUIRE_FALSE(v6->contains(*IpAddress::parse("2001:db8:2::1")));
    // Families never match each other.
    REQUIRE_FALSE(Cidr::parse("0.0.0.0/0")->contains(*IpAddress::parse("::1")));
    REQUIRE(Cidr::parse("::/0")->contains(*IpAddress::parse("2001:db8::1")));
    REQUIRE(Cidr::parse("10.1.2.3")->to_string() == "10.1.2.3/32");
    REQUIRE(Cidr::parse("10.1.2.3/8")->to_string() == "10.0.0.0/8");
    for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "::/129", "x/8", "10.0.0.0/8a"}) {
        INFO(bad);
        REQUIRE_FALSE(Cidr::parse(bad));
    }
}
