// [store]: where the policy daemon's counters live.
#pragma once

#include <cstdint>

#include "common/redis/redis_settings.h"

namespace relayguard {

enum class StoreType { memory, redis };

struct StoreSettings {
    StoreType type = StoreType::memory;
    std::uint32_t memory_max_clients = 100000;
    RedisSettings redis;
};

}  // namespace relayguard
