// [store]: where the policy daemon's counters live.
#pragma once

#include <cstdint>
#include <string>

#include "common/redis/redis_settings.h"

namespace relayguard {

enum class StoreType { memory, redis };

struct StoreSettings {
    StoreType type = StoreType::memory;
    std::uint32_t memory_max_clients = 100000;
    // Where the memory store keeps its counters and blocks across a clean
    // restart ("" = forgotten at every stop).
    std::string memory_snapshot;
    RedisSettings redis;
};

}  // namespace relayguard
