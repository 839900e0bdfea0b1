// The resolver half of [dns]: servers, timeouts and the cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/clock.h"

namespace relayguard {

struct ResolverSettings {
    std::vector<std::string> servers;  // "host:port"; empty: /etc/resolv.conf
    Duration timeout = std::chrono::seconds(2);
    std::uint32_t tries = 2;
    std::uint32_t cache_max_entries = 50000;
    Duration cache_max_ttl = std::chrono::hours(1);
    Duration negative_ttl = std::chrono::minutes(5);
};

}  // namespace relayguard
