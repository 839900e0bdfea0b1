// The Redis client against a real server: ACL logins, what a refused login
// says (never the password), deadlines when every connection is busy, and
// replies reaching the right thread when concurrent commands share a write.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "common/redis/redis_client.h"
#include "common/base/stage_deadline.h"
#include "tests/store/redis_server_process.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {
RedisSettings settings_for(const test::RedisServerProcess& server) {
    RedisSettings r;
    r.servers = {server.address()};
    r.connect_timeout = 200ms;
    r.command_timeout = 300ms;
    r.pool_size = 1;
    return r;
}
}  // namespace

TEST_CASE("an ACL user logs in, and a wrong password is refused without being shown", "[redis]") {
    test::RedisServerProcess server;
    server.call({"ACL", "SETUSER", "relay", "on", ">s3cret-pass", "~relayguard:*", "+@all"});
    auto good = settings_for(server);
    good.username = "relay";
    good.password = "s3cret-pass";
    RedisClient client(good);
    auto set = client.command({"SET", "relayguard:x", "1"}, "relayguard:x");
    REQUIRE(set);
    REQUIRE(set->str == "OK");
    // The ACL keeps this user to its prefix.
    REQUIRE(client.command({"SET", "other:x", "1"}, "other:x")->is_error());

    auto bad = good;
    bad.password = "wrong-pass";
    RedisClient refused(bad);
    REQUIRE_FALSE(refused.command({"PING"}, ""));
    INFO(refused.last_error());
    REQUIRE(refused.last_error().find("WRONGPASS") != std::string::npos);
    REQUIRE(refused.last_error().find("wrong-pass") == std::string::npos);
}

TEST_CASE("a call queues for a busy connection instead of opening more than the pool allows", "[redis]") {
    test::RedisServerProcess server;
    RedisClient client(settings_for(server));
    REQUIRE(client.command({"PING"}, ""));
    // The single pooled connection is held by a slow command.
    std::thread slow([&] { REQUIRE(client.command({"DEBUG", "SLEEP", "0.25"}, "")->str == "OK"); });
    std::this_thread::sleep_for(50ms);
    auto started = std::chrono::steady_clock::now();
    auto second = client.command({"PING"}, "");
    auto waited = std::chrono::steady_clock::now() - started;
    slow.join();
    REQUIRE(second);
    REQUIRE(waited > 100ms);
    auto clients = server.call({"INFO", "clients"});
    // Its own connection for INFO, and the pool's one.
    REQUIRE(clients.str.find("connected_clients:2") != std::string::npos);
}

TEST_CASE("threads sharing one connection each get their own replies, however the commands were batched", "[redis]") {
    test::RedisServerProcess server;
    RedisClient client(settings_for(server));  // one connection for 16 threads
    constexpr int threads = 16, each = 300;
    std::vector<int> wrong(threads, 0), failed(threads, 0);
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            std::string key = "seq:" + std::to_string(t);
            for (int i = 1; i <= each; ++i) {
                auto r = client.command({"INCR", key}, key);
                if (!r) {
                    ++failed[t];
                } else if (r->type != RedisValue::Type::integer || r->integer != i) {
                    ++wrong[t];
                }
            }
        });
    }
    for (auto& w : workers) w.join();
    for (int t = 0; t < threads; ++t) {
        INFO("thread " << t);
        REQUIRE(failed[t] == 0);
        REQUIRE(wrong[t] == 0);
    }
    // And each ran exactly once: none lost or sent twice by a batch.
    auto stats = server.call({"INFO", "commandstats"});
    REQUIRE(stats.str.find("cmdstat_incr:calls=" + std::to_string(threads * each)) != std::string::npos);
}

TEST_CASE("a call waits no longer than its SMTP stage allows, whatever the command timeout", "[redis]") {
    test::RedisServerProcess server;
    auto patient = settings_for(server);
    patient.command_timeout = 5s;
    patient.pool_size = 2;
    RedisClient client(patient);
    REQUIRE(client.command({"PING"}, ""));
    // A server busy for 1 s (as one paused would be) holds the pool's first connection.
    std::thread busy([&] { client.command({"DEBUG", "SLEEP", "1"}, ""); });
    std::this_thread::sleep_for(50ms);
    auto started = std::chrono::steady_clock::now();
    {
        StageDeadline stage(StageDeadline::from_now(300ms));
        REQUIRE_FALSE(client.command({"PING"}, ""));
    }
    auto waited = std::chrono::steady_clock::now() - started;
    busy.join();
    CHECK(waited >= 250ms);
    CHECK(waited < 700ms);
    INFO(client.last_error());
    REQUIRE(client.last_error().find(redis_stage_timeout) != std::string::npos);
    REQUIRE(client.failures() == 1);
}

TEST_CASE("a call made after its stage's deadline fails at once, counted as a failure", "[redis]") {
    test::RedisServerProcess server;
    RedisClient client(settings_for(server));
    StageDeadline stage(StageDeadline::from_now(-1ms));
    auto started = std::chrono::steady_clock::now();
    REQUIRE_FALSE(client.command({"PING"}, ""));
    REQUIRE(client.send_all({{"PING"}}, {""}) == 1);
    REQUIRE(std::chrono::steady_clock::now() - started < 50ms);
    REQUIRE(client.last_error() == redis_stage_timeout);
    REQUIRE(client.failures() == 2);
    REQUIRE(client.round_trips() == 0);  // nothing reached the server
}
