// Local-domain matching with and without subdomains.
#include <catch2/catch.hpp>

#include "policy/domain_set.h"

using relayguard::DomainSet;

TEST_CASE("exact domains match case-insensitively, with or without a trailing dot", "[domains]") {
    DomainSet d;
    d.add("Example.Test", false);
    REQUIRE(d.contains("example.test"));
    REQUIRE(d.contains("EXAMPLE.TEST."));
    REQUIRE_FALSE(d.contains("sub.example.test"));
    REQUIRE_FALSE(d.contains("badexample.test"));
    REQUIRE_FALSE(d.contains("test"));
    REQUIRE_FALSE(d.contains(""));
}

TEST_CASE("subdomain matching by setting or by a leading dot", "[domains]") {
    DomainSet all;
    all.add("example.test", true);
    REQUIRE(all.contains("example.test"));
    REQUIRE(all.contains("a.b.example.test"));
    REQUIRE_FALSE(all.contains("example.test.evil"));
    REQUIRE_FALSE(all.contains("notexample.test"));

    DomainSet only_sub;
    only_sub.add(".example.test", false);
    REQUIRE(only_sub.contains("mx.example.test"));
    REQUIRE_FALSE(only_sub.contains("example.test"));
}
