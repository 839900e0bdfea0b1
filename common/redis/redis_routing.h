// What Redis Cluster routing needs and hiredis 0.14 lacks: the hash slot of a
// key, the slot map from CLUSTER SLOTS, and the MOVED/ASK redirects a node
// answers when a slot lives elsewhere. Pure functions, unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/redis/redis_connection.h"

namespace relayguard {

constexpr std::uint16_t redis_slot_count = 16384;

// CRC16 (XMODEM) of the key's hash tag, or of the whole key without one,
// modulo 16384: the slot Redis Cluster keeps the key in.
std::uint16_t redis_key_slot(std::string_view key);

struct RedisSlotRange {
    std::uint16_t first = 0;
    std::uint16_t last = 0;
    RedisEndpoint master;
};

// The masters of CLUSTER SLOTS; a node announced without an address ("" or
// "?") is taken to be `asked`, the node that answered.
Result<std::vector<RedisSlotRange>> parse_cluster_slots(const RedisValue& reply, const RedisEndpoint& asked);

struct RedisRedirect {
    bool ask = false;  // ASK: this one command goes there; MOVED: the slot lives there now
    std::uint16_t slot = 0;
    RedisEndpoint to;
};

std::optional<RedisRedirect> parse_redirect(const RedisValue& reply);

}  // namespace relayguard
