// [store.redis]: the Redis servers and how the client speaks to them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/clock.h"

namespace relayguard {

enum class RedisMode { single, sentinel, cluster };

struct RedisSettings {
    RedisMode mode = RedisMode::single;
    std::vector<std::string> servers{"127.0.0.1:6379"};  // host:port or unix:/path
    std::string sentinel_master = "mymaster";
    std::string username;
    std::string password;  // never logged
    std::string key_prefix = "relayguard:";
    Duration connect_timeout = std::chrono::milliseconds(200);
    Duration command_timeout = std::chrono::milliseconds(200);
    std::uint32_t pool_size = 8;
    Duration connection_lease = std::chrono::seconds(60);
};

}  // namespace relayguard
