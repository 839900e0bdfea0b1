// Redis Cluster routing: hash slots, CLUSTER SLOTS and redirects, checked
// against the values the Redis Cluster specification gives.
#include <catch2/catch.hpp>

#include "common/redis/redis_routing.h"

using namespace relayguard;

namespace {
RedisValue integer(long long v) { return RedisValue{RedisValue::Type::integer, v, "", {}}; }
RedisValue text(std::string s) { return RedisValue{RedisValue::Type::string, 0, std::move(s), {}}; }
RedisValue error(std::string s) { return RedisValue{RedisValue::Type::error, 0, std::move(s), {}}; }
RedisValue array(std::vector<RedisValue> v) { return RedisValue{RedisValue::Type::array, 0, "", std::move(v)}; }
}  // namespace

TEST_CASE("key slots follow the cluster specification", "[redis]") {
    // CRC16("123456789") is 0x31C3 in the specification's test vector.
    REQUIRE(redis_key_slot("123456789") == 0x31C3 % 16384);
    REQUIRE(redis_key_slot("foo") == 12182);
    REQUIRE(redis_key_slot("{user1000}.following") == redis_key_slot("{user1000}.followers"));
    REQUIRE(redis_key_slot("foo{bar}{zap}") == redis_key_slot("bar"));
    // An empty tag does not count: the whole key is hashed.
    REQUIRE(redis_key_slot("foo{}{bar}") == redis_key_slot("foo{}{bar}"));
    REQUIRE(redis_key_slot("foo{}{bar}") != redis_key_slot("bar"));
    REQUIRE(redis_key_slot("foo{{bar}}zap") == redis_key_slot("{bar"));
}

TEST_CASE("every counter of one client lands in one slot", "[redis]") {
    auto slot = redis_key_slot("relayguard:{2001:db8::/64}:msg");
    REQUIRE(redis_key_slot("relayguard:{2001:db8::/64}:conn") == slot);
    REQUIRE(redis_key_slot("relayguard:{2001:db8::/64}:block") == slot);
}

TEST_CASE("CLUSTER SLOTS replies become slot ranges", "[redis]") {
    RedisEndpoint asked{"127.0.0.1", 7000, ""};
    auto reply = array({array({integer(0), integer(5460), array({text("127.0.0.1"), integer(7000), text("id0")})}),
                        array({integer(5461), integer(16383), array({text(""), integer(7001), text("id1")}),
                               array({text("127.0.0.1"), integer(7004), text("replica")})})});
    auto ranges = parse_cluster_slots(reply, asked);
    REQUIRE(ranges);
    REQUIRE(ranges->size() == 2);
    REQUIRE((*ranges)[0].last == 5460);
    REQUIRE((*ranges)[0].master.port == 7000);
    // No address announced: the node that answered, on the given port.
    REQUIRE((*ranges)[1].master.host == "127.0.0.1");
    REQUIRE((*ranges)[1].master.port == 7001);

    REQUIRE_FALSE(parse_cluster_slots(error("ERR This instance has cluster support disabled"), asked));
    REQUIRE_FALSE(parse_cluster_slots(array({array({integer(0), integer(20000), array({text("h"), integer(1)})})}), asked));
    REQUIRE_FALSE(parse_cluster_slots(array({array({integer(9), integer(3), array({text("h"), integer(1)})})}), asked));
    REQUIRE_FALSE(parse_cluster_slots(array({}), asked));
}

TEST_CASE("MOVED and ASK redirects are read, other errors are not", "[redis]") {
    auto moved = parse_redirect(error("MOVED 3999 127.0.0.1:6381"));
    REQUIRE(moved);
    REQUIRE_FALSE(moved->ask);
    REQUIRE(moved->slot == 3999);
    REQUIRE(moved->to.port == 6381);
    auto ask = parse_redirect(error("ASK 12182 10.0.0.5:7002"));
    REQUIRE(ask);
    REQUIRE(ask->ask);
    REQUIRE(ask->to.host == "10.0.0.5");
    REQUIRE_FALSE(parse_redirect(error("NOSCRIPT No matching script")));
    REQUIRE_FALSE(parse_redirect(error("MOVED 99999 h:1")));
    REQUIRE_FALSE(parse_redirect(error("MOVED 1 nowhere")));
    REQUIRE_FALSE(parse_redirect(text("MOVED 1 h:1")));
}

TEST_CASE("Redis endpoints parse from the config's notation", "[redis]") {
    REQUIRE(RedisEndpoint::parse("127.0.0.1:6379")->port == 6379);
    REQUIRE(RedisEndpoint::parse("[::1]:6380")->host == "::1");
    REQUIRE(RedisEndpoint::parse("unix:/run/redis/redis.sock")->unix_path == "/run/redis/redis.sock");
    REQUIRE(RedisEndpoint::parse("[::1]:6380")->to_string() == "[::1]:6380");
    REQUIRE_FALSE(RedisEndpoint::parse("unix:relative"));
    REQUIRE_FALSE(RedisEndpoint::parse("host:0"));
    REQUIRE_FALSE(RedisEndpoint::parse("host"));
    REQUIRE_FALSE(RedisEndpoint::parse("host:99999"));
}
