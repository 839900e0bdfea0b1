// The counter store's contract, checked on both implementations: every case
// runs on the in-memory store and on the Redis store against a real
// redis-server, so a node counting alone and a cluster counting in Redis
// decide alike. Cases that only one of them has follow at the end.
#include <catch2/catch.hpp>

#include <cstdio>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/redis/redis_client.h"
#include "plugin/stores/redis_account_store.h"
#include "plugin/stores/redis_counter_store.h"
#include "plugin/stores/store_failover.h"
#include "policy/memory_counter_store.h"
#include "tests/store/redis_server_process.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {

TimePoint t0() { return TimePoint(Duration(1'700'000'000'000)); }

// spdlog builds its registry on first use. The daemon logs from main before
// it starts a thread; these tests do not, and two stores' threads logging
// first at once race on that construction in a way ThreadSanitizer cannot
// see is ordered (libspdlog is not instrumented). Build it before main.
const auto spdlog_registry_built_first = spdlog::default_logger();

test::RedisServerProcess& redis_server() {
    static test::RedisServerProcess server;
    return server;
}

RedisSettings redis_settings() {
    RedisSettings r;
    r.servers = {redis_server().address()};
    r.key_prefix = "test:";
    r.connect_timeout = 200ms;
    r.command_timeout = 500ms;
    r.pool_size = 4;
    return r;
}

// One store of the given kind, on an empty Redis.
struct StoreUnderTest {
    explicit StoreUnderTest(const std::string& kind, Duration lease = 60s) {
        if (kind == "memory") {
            store = std::make_unique<MemoryCounterStore>();
            windows = std::make_unique<MemoryPopWindowStore>();
            return;
        }
        redis_server().call({"FLUSHALL"});
        client = std::make_unique<RedisClient>(redis_settings());
        store = std::make_unique<RedisCounterStore>(*client, "test:", lease, clock);
        windows = std::make_unique<RedisPopWindowStore>(*client, "test:");
    }
    ManualClock clock{t0()};
    std::unique_ptr<RedisClient> client;
    std::unique_ptr<CounterStore> store;
    std::unique_ptr<PopWindowStore> windows;
};

}  // namespace

TEST_CASE("message rate is a sliding window, not a clock bucket", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    TimePoint now = t0();
    for (int i = 0; i < 3; ++i) REQUIRE(s.record_message("c", 1h, 3, now + std::chrono::minutes(20 * i)).has_value());
    // At 40 min three messages are in the last hour.
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 41min)->count == 3);
    // The first leaves the window exactly one hour after it was sent.
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 59min + 59s)->count == 3);
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 60min)->count == 2);
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 99min)->count == 1);
    REQUIRE(s.message_rate("c", 1h, 3, false, now + 100min)->count == 0);
}

TEST_CASE("attempt counting records only below the limit", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    for (int i = 0; i < 2; ++i) REQUIRE(s.message_rate("c", 1h, 2, true, t0())->recorded);
    auto third = s.message_rate("c", 1h, 2, true, t0());
    REQUIRE(third->count == 2);
    REQUIRE_FALSE(third->recorded);
}

TEST_CASE("a message in flight holds its slot until it is committed or released", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    REQUIRE(s.record_message("c", 1h, 3, t0()));
    REQUIRE(s.reserve_message("c", "tx1", 1h, 3, t0())->recorded);
    REQUIRE(s.reserve_message("c", "tx2", 1h, 3, t0())->recorded);
    auto full = s.reserve_message("c", "tx3", 1h, 3, t0());
    REQUIRE(full->count == 3);
    REQUIRE_FALSE(full->recorded);
    // Counting attempts meets the same slots.
    REQUIRE_FALSE(s.message_rate("c", 1h, 3, true, t0())->recorded);
    REQUIRE(s.inspect("c", {1h, 1h, 1h}, t0())->messages_in_flight == 2);
    // A release frees its slot (on Redis once the write is out, at once for
    // this node's own next call); a commit keeps it, as a counted message.
    s.release_message("c", "tx1");
    s.commit_message("c", "tx2", 1h, 3, t0() + 1s);
    REQUIRE(s.reserve_message("c", "tx4", 1h, 3, t0() + 2s)->recorded);
    REQUIRE_FALSE(s.reserve_message("c", "tx5", 1h, 3, t0() + 2s)->recorded);
    s.release_message("c", "tx4");
    auto counters = s.inspect("c", {1h, 1h, 1h}, t0() + 2s);
    if (t.client) {
        // The other nodes' view: the writes go out within moments.
        for (int i = 0; i < 100 && counters->messages_in_flight > 0; ++i) {
            std::this_thread::sleep_for(10ms);
            counters = s.inspect("c", {1h, 1h, 1h}, t0() + 2s);
        }
    }
    REQUIRE(counters->messages == 2);
    REQUIRE(counters->messages_in_flight == 0);
    // The committed message leaves the window an hour after its end of data.
    REQUIRE(s.message_rate("c", 1h, 3, false, t0() + 1h + 500ms)->count == 1);
}

TEST_CASE("a commit without a reservation counts one message", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    s.commit_message("c", "", 1h, 3, t0());
    s.commit_message("c", "", 1h, 3, t0());
    REQUIRE(s.reserve_message("c", "tx", 1h, 3, t0())->count == 2);
}

TEST_CASE("a rate window keeps at most `limit` timestamps per client", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    for (int i = 0; i < 300; ++i) s.record_message("c", 1h, 10, t0() + std::chrono::milliseconds(i));
    // Only the newest ten matter for a limit of ten; older ones were dropped.
    REQUIRE(s.message_rate("c", 1h, 10, false, t0() + 1s)->count == 10);
}

TEST_CASE("connection slots are per connection id and given back", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    REQUIRE(s.open_connection("c", "a", 2, t0())->admitted);
    REQUIRE(s.open_connection("c", "b", 2, t0())->held == 2);
    auto third = s.open_connection("c", "x", 2, t0());
    REQUIRE_FALSE(third->admitted);
    REQUIRE(third->held == 2);
    s.close_connection("c", "a");
    s.close_connection("c", "a");  // twice is harmless
    REQUIRE(s.open_connection("c", "x", 2, t0())->admitted);
    REQUIRE(s.open_connection("other", "y", 2, t0())->held == 1);
}

TEST_CASE("distinct unknown recipients block at the threshold", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    REQUIRE(s.record_unknown_recipient("c", "a@x", 1h, 3, 1h, t0())->distinct == 1);
    // The same address again is still one.
    REQUIRE(s.record_unknown_recipient("c", "a@x", 1h, 3, 1h, t0())->distinct == 1);
    REQUIRE_FALSE(s.record_unknown_recipient("c", "b@x", 1h, 3, 1h, t0())->blocked_until);
    auto third = s.record_unknown_recipient("c", "c@x", 1h, 3, 1h, t0());
    REQUIRE(third->distinct == 3);
    REQUIRE(third->blocked_until == t0() + 1h);
    REQUIRE(s.blocked_until("c", t0() + 59min)->value() == t0() + 1h);
    REQUIRE(s.open_connection("c", "k", 0, t0() + 1min)->blocked_until == t0() + 1h);
    REQUIRE_FALSE(s.blocked_until("c", t0() + 1h)->has_value());
    REQUIRE_FALSE(s.blocked_until("never-seen", t0())->has_value());
}

TEST_CASE("unknown recipients leave the window, and a zero block time never blocks", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    s.record_unknown_recipient("c", "a@x", 10min, 2, 1h, t0());
    auto later = s.record_unknown_recipient("c", "b@x", 10min, 2, 1h, t0() + 11min);
    REQUIRE(later->distinct == 1);
    REQUIRE_FALSE(later->blocked_until);
    auto warn_only = s.record_unknown_recipient("w", "a@x", 1h, 1, Duration::zero(), t0());
    REQUIRE(warn_only->distinct == 1);
    REQUIRE_FALSE(warn_only->blocked_until);
}

TEST_CASE("failed logins block by their own count and the block names its kind", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    // Counted apart from unknown recipients: two of each do not make a block of three.
    s.record_unknown_recipient("c", "a@x", 1h, 3, 1h, t0());
    s.record_unknown_recipient("c", "b@x", 1h, 3, 1h, t0());
    REQUIRE(s.record_guess(GuessKind::failed_login, "c", "u1 p1", 1h, 3, 30min, t0())->distinct == 1);
    // One password retried is one guess.
    REQUIRE(s.record_guess(GuessKind::failed_login, "c", "u1 p1", 1h, 3, 30min, t0())->distinct == 1);
    REQUIRE_FALSE(s.record_guess(GuessKind::failed_login, "c", "u1 p2", 1h, 3, 30min, t0())->blocked_until);
    REQUIRE_FALSE(s.blocked_until("c", t0())->has_value());
    auto third = s.record_guess(GuessKind::failed_login, "c", "u2 p1", 1h, 3, 30min, t0() + 1s);
    REQUIRE(third->blocked_until == t0() + 1s + 30min);
    auto block = s.block("c", t0() + 2s);
    REQUIRE(block->has_value());
    REQUIRE((*block)->kind == GuessKind::failed_login);
    auto conn = s.open_connection("c", "k", 0, t0() + 2s);
    REQUIRE(conn->blocked_until == t0() + 1s + 30min);
    REQUIRE(conn->blocked_for == GuessKind::failed_login);
    // A third unknown recipient during the block does not replace it.
    REQUIRE(s.record_unknown_recipient("c", "c@x", 1h, 3, 1h, t0() + 3s)->blocked_until == t0() + 1s + 30min);
    REQUIRE((*s.block("c", t0() + 4s))->kind == GuessKind::failed_login);
    auto seen = s.inspect("c", {1h, 1h, 1h}, t0() + 4s);
    REQUIRE(seen->blocked_for == GuessKind::failed_login);
    REQUIRE(seen->unknown_recipients == 3);
    REQUIRE(seen->failed_logins == 0);  // the block started a new count
    // Unblocking forgets both counts.
    s.record_guess(GuessKind::failed_login, "c", "u3 p1", 1h, 3, 30min, t0() + 5s);
    REQUIRE(s.unblock("c"));
    auto after = s.inspect("c", {1h, 1h, 1h}, t0() + 6s);
    REQUIRE(after->failed_logins == 0);
    REQUIRE(after->unknown_recipients == 0);
    REQUIRE_FALSE(after->blocked_until);
}

TEST_CASE("an account's failed logins are counted by distinct networks within the window", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    auto first = s.record_account_failure("u1", "192.0.2.1", 1h, 10, t0());
    REQUIRE((first->networks == 1 && first->new_network));
    auto again = s.record_account_failure("u1", "192.0.2.1", 1h, 10, t0() + 1s);
    REQUIRE((again->networks == 1 && !again->new_network));
    REQUIRE(s.record_account_failure("u1", "198.51.100.7", 1h, 10, t0() + 2s)->networks == 2);
    REQUIRE(s.record_account_failure("u2", "198.51.100.7", 1h, 10, t0() + 2s)->networks == 1);
    // The first network's last failure leaves the window.
    REQUIRE(s.record_account_failure("u1", "203.0.113.9", 1h, 10, t0() + 1h + 1500ms)->networks == 2);
    // At most max_kept are kept, so an attack from a botnet costs bounded memory.
    for (int i = 0; i < 20; ++i) s.record_account_failure("u3", "10.0.0." + std::to_string(i), 1h, 5, t0());
    auto full = s.record_account_failure("u3", "10.0.1.1", 1h, 5, t0());
    REQUIRE((full->networks == 5 && !full->new_network));
}

TEST_CASE("a failed AUTH mark bars an address until its end", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    REQUIRE_FALSE(s.failed_auth_until("192.0.2.1", t0())->has_value());
    REQUIRE(s.mark_failed_auth("192.0.2.1", t0() + 10min, t0()));
    REQUIRE(s.failed_auth_until("192.0.2.1", t0() + 9min)->value() == t0() + 10min);
    REQUIRE_FALSE(s.failed_auth_until("192.0.2.2", t0())->has_value());
    REQUIRE_FALSE(s.failed_auth_until("192.0.2.1", t0() + 10min)->has_value());
}

TEST_CASE("unblock lifts a block and clears the count", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    s.record_unknown_recipient("c", "a@x", 1h, 1, 1h, t0());
    REQUIRE(s.blocked_until("c", t0())->has_value());
    REQUIRE(s.unblock("c"));
    REQUIRE_FALSE(s.blocked_until("c", t0())->has_value());
    REQUIRE_FALSE(s.unblock("c"));
}

TEST_CASE("inspect reads every counter of a client and changes none", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    REQUIRE(s.inspect("c", {1h, 1h, 1h}, t0())->messages == 0);
    s.record_message("c", 1h, 10, t0());
    s.record_message("c", 1h, 10, t0() + 1s);
    s.open_connection("c", "conn-1", 0, t0());
    s.record_unknown_recipient("c", "a@x", 1h, 3, 1h, t0());
    s.record_unknown_recipient("c", "b@x", 1h, 3, 1h, t0());
    auto seen = s.inspect("c", {1h, 1h, 1h}, t0() + 2s);
    REQUIRE(seen);
    REQUIRE(seen->messages == 2);
    REQUIRE(seen->connections == 1);
    REQUIRE(seen->unknown_recipients == 2);
    REQUIRE_FALSE(seen->blocked_until);
    // Reading twice gives the same; the windows still slide.
    REQUIRE(s.inspect("c", {1h, 1h, 1h}, t0() + 2s)->messages == 2);
    REQUIRE(s.inspect("c", {1h, 1h, 1h}, t0() + 1h + 500ms)->messages == 1);
    s.record_unknown_recipient("c", "c@x", 1h, 3, 1h, t0() + 3s);
    REQUIRE(s.inspect("c", {1h, 1h, 1h}, t0() + 4s)->blocked_until == t0() + 3s + 1h);
    REQUIRE(s.inspect("other", {1h, 1h, 1h}, t0())->connections == 0);
}

TEST_CASE("inspect says when each windowed count next drops, and a reset starts the messages again", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& s = *t.store;
    auto empty = s.inspect("c", {1h, 1h, 1h}, t0());
    REQUIRE_FALSE(empty->oldest_message);
    REQUIRE_FALSE(empty->oldest_unknown_recipient);
    s.record_message("c", 1h, 10, t0() + 5s);
    s.record_message("c", 1h, 10, t0() + 9s);
    s.record_unknown_recipient("c", "a@x", 1h, 5, 1h, t0() + 7s);
    s.record_guess(GuessKind::failed_login, "c", "u1", 1h, 5, 1h, t0() + 8s);
    auto seen = s.inspect("c", {1h, 1h, 1h}, t0() + 10s);
    REQUIRE(seen->oldest_message == t0() + 5s);
    REQUIRE(seen->oldest_unknown_recipient == t0() + 7s);
    REQUIRE(seen->oldest_failed_login == t0() + 8s);
    // Once the oldest has left the window, the next one is the oldest.
    REQUIRE(s.inspect("c", {1h, 1h, 1h}, t0() + 1h + 6s)->oldest_message == t0() + 9s);
    s.forget_messages("c");
    REQUIRE(s.inspect("c", {1h, 1h, 1h}, t0() + 10s)->messages == 0);
    REQUIRE_FALSE(s.inspect("c", {1h, 1h, 1h}, t0() + 10s)->oldest_message);
}

TEST_CASE("a POP-before-SMTP window opens, extends and ends", "[store]") {
    StoreUnderTest t(GENERATE(as<std::string>{}, "memory", "redis"));
    auto& w = *t.windows;
    REQUIRE_FALSE(w.find("192.0.2.7", t0())->has_value());
    REQUIRE(w.grant("192.0.2.7", "alice", t0() + 10min, t0()));
    auto open = w.find("192.0.2.7", t0() + 9min);
    REQUIRE(open->has_value());
    REQUIRE((*open)->user == "alice");
    REQUIRE((*open)->until == t0() + 10min);
    REQUIRE(w.grant("192.0.2.7", "alice", t0() + 15min, t0() + 5min));
    REQUIRE(w.find("192.0.2.7", t0() + 14min)->has_value());
    REQUIRE_FALSE(w.find("192.0.2.7", t0() + 15min)->has_value());
    REQUIRE_FALSE(w.find("192.0.2.8", t0())->has_value());
}

// --- the in-memory store only ---

TEST_CASE("memory stays bounded under a flood of new clients", "[store]") {
    MemoryCounterStore s(1000);
    s.open_connection("holder", "h", 0, t0());
    for (int i = 0; i < 20000; ++i) {
        s.record_message("ip" + std::to_string(i), 1h, 5, t0() + std::chrono::milliseconds(i));
    }
    REQUIRE(s.client_count() <= 1000);
    // A client holding a live connection is never evicted, or its slot would leak.
    REQUIRE(s.open_connection("holder", "h2", 1, t0())->held == 1);
}

TEST_CASE("a harvest block and a live connection survive a flood of new clients from the same /48", "[store]") {
    MemoryCounterStore s(1000);
    // The harvester's /64 is blocked for 10 minutes; another /64 of it holds
    // a connection slot.
    auto blocked = s.record_unknown_recipient("2001:db8:77:1::/64", "nobody@example.test", 10min, 1, 10min, t0());
    REQUIRE(blocked->blocked_until == t0() + 10min);
    REQUIRE(s.open_connection("2001:db8:77:2::/64", "c1", 1, t0())->admitted);
    // Then it rotates through 50,000 other /64s of its /48, each sending
    // within the hour-long message-rate window: counters that outlive the block.
    for (int i = 0; i < 50000; ++i) {
        char key[64];
        std::snprintf(key, sizeof key, "2001:db8:77:%x::/64", 0x1000 + i);
        s.record_message(key, 1h, 5, t0() + std::chrono::milliseconds(i));
    }
    REQUIRE(s.client_count() <= 1000);
    auto later = t0() + 1min;
    REQUIRE(s.blocked_until("2001:db8:77:1::/64", later)->value() == t0() + 10min);
    REQUIRE(s.inspect("2001:db8:77:2::/64", {1h, 1h, 1h}, later)->connections == 1);
    REQUIRE_FALSE(s.open_connection("2001:db8:77:2::/64", "c2", 1, later)->admitted);
}

TEST_CASE("the memory store makes room by dropping the least recently used plain counters", "[store]") {
    MemoryCounterStore s(100);
    // A client that keeps sending stays counted while one-off clients pass.
    s.record_message("regular", 1h, 10, t0());
    for (int i = 0; i < 1000; ++i) {
        auto now = t0() + std::chrono::milliseconds(i);
        s.record_message("once-" + std::to_string(i), 1h, 10, now);
        if (i % 50 == 0) s.message_rate("regular", 1h, 10, false, now);
    }
    REQUIRE(s.inspect("regular", {1h, 1h, 1h}, t0() + 1s)->messages == 1);
}

TEST_CASE("a memory store full of blocks refuses new clients as an unreachable store, says so once, and recovers",
          "[store]") {
    int told = 0;
    std::size_t held = 0;
    MemoryCounterStore s(100, [&](std::size_t n) {
        ++told;
        held = n;
    });
    for (int i = 0; i < 100; ++i) {
        REQUIRE(s.record_unknown_recipient("blocked-" + std::to_string(i), "r", 1h, 1, 10min, t0())->blocked_until);
    }
    // No entry for a newcomer: std::nullopt, and store.fail_mode decides.
    REQUIRE_FALSE(s.record_message("new", 1h, 5, t0() + 1s));
    REQUIRE_FALSE(s.open_connection("new", "c", 0, t0() + 1s));
    REQUIRE_FALSE(s.record_unknown_recipient("new", "r", 1h, 5, 10min, t0() + 1s));
    REQUIRE(told == 1);
    REQUIRE(held == 100);
    // Clients already known are served as before.
    REQUIRE(s.message_rate("blocked-7", 1h, 5, true, t0() + 2s)->recorded);
    REQUIRE(s.blocked_until("blocked-0", t0() + 2s)->value() == t0() + 10min);
    // An admin unblock makes its entry a plain counter, which may go.
    REQUIRE(s.unblock("blocked-3"));
    REQUIRE(s.record_message("new", 1h, 5, t0() + 3s));
    REQUIRE(s.blocked_until("blocked-4", t0() + 3s)->value() == t0() + 10min);
    // Once the blocks end, their entries may go: new clients are counted again.
    REQUIRE(s.record_message("newest", 1h, 5, t0() + 10min + 1s));
    REQUIRE(s.client_count() <= 100);
}

// --- the Redis store only ---

TEST_CASE("two nodes on one Redis share one limit", "[store][redis]") {
    StoreUnderTest a("redis");
    RedisCounterStore b(*a.client, "test:", 60s, a.clock);
    REQUIRE(a.store->message_rate("203.0.113.0/24", 1h, 3, true, t0())->recorded);
    REQUIRE(b.message_rate("203.0.113.0/24", 1h, 3, true, t0())->recorded);
    REQUIRE(a.store->message_rate("203.0.113.0/24", 1h, 3, true, t0())->recorded);
    auto fourth = b.message_rate("203.0.113.0/24", 1h, 3, true, t0());
    REQUIRE(fourth->count == 3);
    REQUIRE_FALSE(fourth->recorded);
    // Connection ids are the MTA's, and may repeat between nodes: each node
    // keeps its own.
    REQUIRE(a.store->open_connection("c", "1", 2, t0())->admitted);
    REQUIRE(b.open_connection("c", "1", 2, t0())->held == 2);
    REQUIRE_FALSE(b.open_connection("c", "2", 2, t0())->admitted);
}

TEST_CASE("a connection closed on one node is free on the others within moments, and at once on its own", "[store][redis]") {
    StoreUnderTest a("redis");
    RedisCounterStore b(*a.client, "test:", 60s, a.clock);
    REQUIRE(a.store->open_connection("c", "1", 1, t0())->admitted);
    REQUIRE_FALSE(b.open_connection("c", "2", 1, t0())->admitted);
    a.store->close_connection("c", "1");
    // The close goes out in the background: node b sees the slot free soon.
    bool admitted = false;
    for (int i = 0; i < 100 && !admitted; ++i) {
        admitted = b.open_connection("c", "2", 1, t0())->admitted;
        if (!admitted) std::this_thread::sleep_for(10ms);
    }
    REQUIRE(admitted);
    b.close_connection("c", "2");
    // Node b's own next connection never waits for that: it takes the close along.
    REQUIRE(b.open_connection("c", "3", 1, t0())->admitted);
}

TEST_CASE("a close that could not be sent is sent again once Redis answers", "[store][redis]") {
    StoreUnderTest a("redis");
    RedisCounterStore b(*a.client, "test:", 60s, a.clock);
    REQUIRE(a.store->open_connection("c", "1", 1, t0())->admitted);
    // Writes held back for longer than a call's deadline (200 + 500 ms): the
    // close's send times out, and its connection is dropped with it.
    redis_server().call({"CLIENT", "PAUSE", "1500", "WRITE"});
    a.store->close_connection("c", "1");
    auto started = std::chrono::steady_clock::now();
    bool admitted = false;
    while (!admitted && std::chrono::steady_clock::now() - started < 5s) {
        auto r = b.open_connection("c", "2", 1, t0());
        admitted = r && r->admitted;
        if (!admitted) std::this_thread::sleep_for(50ms);
    }
    // Lost, it would hold the slot for the whole 60 s lease.
    REQUIRE(admitted);
    REQUIRE(std::chrono::steady_clock::now() - started >= 1s);
}

TEST_CASE("while Redis does not answer, ended slots wait in a bounded queue", "[store][redis]") {
    // An outage under traffic must not grow the queue without end: a node
    // that may queue 3 clients' writes ends 6 clients' connections meanwhile.
    StoreUnderTest a("redis");
    RedisCounterStore capped(*a.client, "test:", 60s, a.clock, 3);
    auto client = [](int i) { return "c" + std::to_string(i); };
    for (int i = 0; i < 6; ++i) REQUIRE(capped.open_connection(client(i), "1", 1, t0())->admitted);
    redis_server().call({"CLIENT", "PAUSE", "1500", "WRITE"});
    for (int i = 0; i < 6; ++i) capped.close_connection(client(i), "1");
    REQUIRE(capped.queued_clients() <= 3);
    auto started = std::chrono::steady_clock::now();
    while (capped.queued_clients() > 0 && std::chrono::steady_clock::now() - started < 5s) {
        std::this_thread::sleep_for(50ms);
    }
    REQUIRE(capped.queued_clients() == 0);
    // Sent once Redis answers: 3 slots are free; the 3 dropped ones end with
    // their lease, which nothing renews any more.
    int freed = 0;
    for (int i = 0; i < 6; ++i) {
        auto r = a.store->open_connection(client(i), "2", 1, t0());
        REQUIRE(r);
        freed += r->admitted ? 1 : 0;
    }
    REQUIRE(freed == 3);
    REQUIRE_FALSE(a.store->open_connection(client(5), "3", 1, t0() + 59s)->admitted);
    REQUIRE(a.store->open_connection(client(5), "3", 2, t0() + 61s)->admitted);
}

TEST_CASE("a dead node's connections stop counting after the lease, a live node's do not", "[store][redis]") {
    StoreUnderTest live("redis", 60s);
    auto dead = std::make_unique<RedisCounterStore>(*live.client, "test:", 60s, live.clock);
    RedisCounterStore other(*live.client, "test:", 60s, live.clock);
    REQUIRE(live.store->open_connection("c", "L", 3, t0())->admitted);
    REQUIRE(dead->open_connection("c", "D1", 3, t0())->admitted);
    REQUIRE(dead->open_connection("c", "D2", 3, t0())->admitted);
    dead.reset();  // as if killed: nothing closed
    REQUIRE_FALSE(other.open_connection("c", "x", 3, t0() + 59s)->admitted);
    // The live node renews before the lease ends; the dead one cannot.
    live.clock.advance(50s);
    REQUIRE(dynamic_cast<RedisCounterStore&>(*live.store).refresh_leases() == 0);
    auto after = other.open_connection("c", "x", 3, t0() + 61s);
    REQUIRE(after->admitted);
    REQUIRE(after->held == 2);  // the live node's connection and this one
}

TEST_CASE("a dead node's messages in flight stop counting after the lease, a live node's do not", "[store][redis]") {
    StoreUnderTest live("redis", 60s);
    auto dead = std::make_unique<RedisCounterStore>(*live.client, "test:", 60s, live.clock);
    RedisCounterStore other(*live.client, "test:", 60s, live.clock);
    REQUIRE(live.store->reserve_message("c", "L", 1h, 3, t0())->recorded);
    REQUIRE(dead->reserve_message("c", "D1", 1h, 3, t0())->recorded);
    REQUIRE(dead->reserve_message("c", "D2", 1h, 3, t0())->recorded);
    dead.reset();  // as if killed mid-transaction: nothing released
    REQUIRE_FALSE(other.reserve_message("c", "x", 1h, 3, t0() + 59s)->recorded);
    live.clock.advance(50s);
    REQUIRE(dynamic_cast<RedisCounterStore&>(*live.store).refresh_leases() == 0);
    auto after = other.reserve_message("c", "x", 1h, 3, t0() + 61s);
    REQUIRE(after->recorded);
    REQUIRE(after->count == 1);  // the live node's message in flight
}

TEST_CASE("a node's own release and commit go out with its next MAIL of that client", "[store][redis]") {
    StoreUnderTest a("redis");
    REQUIRE(a.store->reserve_message("c", "1", 1h, 1, t0())->recorded);
    // Straight after: the background send waits a few milliseconds to gather
    // writes, so the next script carries them, and never finds a slot this
    // node has given back still taken.
    a.store->release_message("c", "1");
    REQUIRE(a.store->reserve_message("c", "2", 1h, 1, t0())->recorded);
    a.store->commit_message("c", "2", 1h, 1, t0());
    auto third = a.store->reserve_message("c", "3", 1h, 1, t0());
    REQUIRE(third->count == 1);
    REQUIRE_FALSE(third->recorded);
}

TEST_CASE("every key carries the prefix and the client's hash tag, and expires", "[store][redis]") {
    StoreUnderTest t("redis");
    // Real time here: Redis expires keys by its own clock.
    TimePoint now = std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
    t.store->record_message("198.51.100.0/24", 1h, 5, now);
    t.store->open_connection("198.51.100.0/24", "c1", 5, now);
    t.store->record_unknown_recipient("198.51.100.0/24", "nobody@x", 1h, 2, 1h, now);
    t.store->record_unknown_recipient("198.51.100.0/24", "noone@x", 1h, 2, 1h, now);
    t.windows->grant("198.51.100.9", "bob", now + 10min, now);
    auto keys = redis_server().call({"KEYS", "*"});
    REQUIRE(keys.elements.size() == 5);  // messages, connections, block and its kind, pop window
    for (const auto& k : keys.elements) {
        INFO(k.str);
        REQUIRE(k.str.rfind("test:", 0) == 0);
        REQUIRE((k.str.find("{198.51.100.0/24}") != std::string::npos || k.str.find("{198.51.100.9}") != std::string::npos));
        auto ttl = redis_server().call({"PTTL", k.str});
        REQUIRE(ttl.integer > 0);
        REQUIRE(ttl.integer <= 3'600'000);
    }
}

TEST_CASE("scripts are sent again after the server forgot them", "[store][redis]") {
    StoreUnderTest t("redis");
    REQUIRE(t.store->record_message("c", 1h, 5, t0()).has_value());
    redis_server().call({"SCRIPT", "FLUSH"});
    auto again = t.store->message_rate("c", 1h, 5, true, t0());
    REQUIRE(again.has_value());
    REQUIRE(again->count == 1);
}

TEST_CASE("with Redis down a call fails within its deadline, and recovers by itself", "[store][redis]") {
    StoreUnderTest t("redis");
    REQUIRE(t.store->record_message("c", 1h, 5, t0()).has_value());
    redis_server().stop();
    auto started = std::chrono::steady_clock::now();
    REQUIRE_FALSE(t.store->message_rate("c", 1h, 5, true, t0()).has_value());
    // connect_timeout + command_timeout is 700 ms; refused connections fail at once.
    REQUIRE(std::chrono::steady_clock::now() - started < 700ms);
    REQUIRE_FALSE(t.client->last_error().empty());

    // In fail mode "open" the node counts alone; in "tempfail" it says so.
    StoreHealth open_health("redis", true, [&] { return t.client->last_error(); }, t.clock);
    FailoverCounterStore open(*t.store, open_health, 1000);
    REQUIRE(open.message_rate("c", 1h, 1, true, t0())->recorded);
    REQUIRE_FALSE(open.message_rate("c", 1h, 1, true, t0())->recorded);
    REQUIRE(open_health.degraded());
    StoreHealth closed_health("redis", false, [&] { return t.client->last_error(); }, t.clock);
    FailoverCounterStore closed(*t.store, closed_health, 1000);
    REQUIRE_FALSE(closed.message_rate("c", 1h, 1, true, t0()).has_value());

    redis_server().start();
    // The back-off is at most a second; within two the store is back.
    bool back = false;
    for (int i = 0; i < 40 && !back; ++i) {
        std::this_thread::sleep_for(50ms);
        back = open.message_rate("c", 1h, 5, false, t0()).has_value() && !open_health.degraded();
    }
    REQUIRE(back);
}

TEST_CASE("a failed-login block set on one node reaches another node; its kind costs one round trip, once",
          "[store][redis]") {
    StoreUnderTest a("redis");
    RedisClient b_client(redis_settings());
    RedisCounterStore b(b_client, "test:", 60s, a.clock);
    for (int i = 0; i < 200 && !b.blocks_live(); ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(b.blocks_live());
    REQUIRE_FALSE(*b.block("c", t0()));
    // The message carries no kind (an earlier release's node reads it as
    // before): wait until B has heard it, by its channel alone.
    for (int i = 0; i < 2; ++i) a.store->record_guess(GuessKind::failed_login, "c", "p" + std::to_string(i), 1h, 2, 10min, t0());
    auto asked = b_client.round_trips();
    std::optional<ClientBlock> seen;
    for (int i = 0; i < 100 && !seen; ++i) {
        seen = *b.block("c", t0() + 1s);
        if (!seen) std::this_thread::sleep_for(10ms);
    }
    REQUIRE(seen);
    REQUIRE(seen->until == t0() + 10min);
    REQUIRE(seen->kind == GuessKind::failed_login);
    auto after_first = b_client.round_trips();
    REQUIRE(after_first - asked <= 2);  // the kind, asked once (one more if a lookup came before the message)
    REQUIRE((*b.block("c", t0() + 2s))->kind == GuessKind::failed_login);
    REQUIRE(b_client.round_trips() == after_first);
}

TEST_CASE("a harvest block set on one node reaches another node's RCPT within a second, asking Redis for it once",
          "[store][redis]") {
    StoreUnderTest a("redis");
    RedisClient b_client(redis_settings());
    RedisCounterStore b(b_client, "test:", 60s, a.clock);
    auto& sa = *a.store;
    // Both subscribed: B learns only from the channel.
    for (int i = 0; i < 200 && !b.blocks_live(); ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(b.blocks_live());
    REQUIRE_FALSE(*b.blocked_until("c", t0()));
    for (int i = 0; i < 3; ++i) sa.record_unknown_recipient("c", "guess" + std::to_string(i), 1h, 3, 10min, t0());
    auto asked = b_client.round_trips();
    std::optional<TimePoint> seen;
    for (int i = 0; i < 100 && !seen; ++i) {
        seen = *b.blocked_until("c", t0() + 1s);
        if (!seen) std::this_thread::sleep_for(10ms);
    }
    REQUIRE(seen == t0() + 10min);
    // The channel says a block began, not what kind: the first lookup asks
    // for the block and its kind, once (two single-key reads: a Cluster
    // slot being migrated refuses one read of both); every later one
    // answers from the list.
    auto after_first = b_client.round_trips();
    REQUIRE(after_first - asked <= 2);
    for (int i = 0; i < 10; ++i) REQUIRE(*b.blocked_until("c", t0() + 1s) == t0() + 10min);
    REQUIRE(b_client.round_trips() == after_first);
    asked = after_first;
    // A lift travels the same way.
    REQUIRE(sa.unblock("c"));
    bool lifted = false;
    for (int i = 0; i < 100 && !lifted; ++i) {
        lifted = !*b.blocked_until("c", t0() + 2s);
        if (!lifted) std::this_thread::sleep_for(10ms);
    }
    REQUIRE(lifted);
    REQUIRE(b_client.round_trips() == asked);
}

TEST_CASE("account stores: logins by network, the compromised mark and its held mail", "[store]") {
    std::string kind = GENERATE(as<std::string>{}, "memory", "redis");
    std::unique_ptr<RedisClient> client;
    std::unique_ptr<AccountStore> store;
    if (kind == "memory") {
        store = std::make_unique<MemoryAccountStore>();
    } else {
        redis_server().call({"FLUSHALL"});
        client = std::make_unique<RedisClient>(redis_settings());
        store = std::make_unique<RedisAccountStore>(*client, "test:");
    }
    auto& s = *store;
    REQUIRE(s.record_login("u1", "192.0.2.0/24", 1h, 4, t0())->networks == 1);
    auto second = s.record_login("u1", "198.51.100.0/24", 1h, 4, t0() + 1s);
    REQUIRE((second->networks == 2 && second->new_network));
    REQUIRE_FALSE(s.record_login("u1", "192.0.2.0/24", 1h, 4, t0() + 2s)->new_network);
    auto networks = s.login_networks("u1", 1h, t0() + 3s);
    REQUIRE(networks->size() == 2);
    REQUIRE(networks->at("192.0.2.0/24") == t0() + 2s);
    REQUIRE(s.login_networks("u1", 1h, t0() + 1h + 1500ms)->size() == 1);

    REQUIRE_FALSE(s.compromised("u1", true)->has_value());
    REQUIRE_FALSE(s.add_held("u1", "QID0", t0()));  // not marked: nothing to note
    REQUIRE(*s.mark_compromised("u1", "logged in from 4 networks", t0() + 5s));
    REQUIRE_FALSE(*s.mark_compromised("u1", "again", t0() + 6s));  // marked once; the first reason stays
    REQUIRE(s.add_held("u1", "QID1", t0() + 7s));
    REQUIRE(s.add_held("u1", "QID2", t0() + 8s));
    REQUIRE(s.add_held("u1", "QID1", t0() + 9s));  // no duplicate
    auto mark = s.compromised("u1", true);
    REQUIRE(mark->has_value());
    REQUIRE((*mark)->reason == "logged in from 4 networks");
    REQUIRE((*mark)->since == t0() + 5s);
    REQUIRE((*mark)->held == std::vector<std::string>{"QID1", "QID2"});
    REQUIRE((*s.compromised("u1", false))->held.empty());  // a decision reads no list
    REQUIRE_FALSE(s.compromised("u2", true)->has_value());
    auto cleared = s.clear_compromised("u1");
    REQUIRE((*cleared)->held.size() == 2);
    REQUIRE_FALSE(s.compromised("u1", true)->has_value());
    REQUIRE_FALSE(s.clear_compromised("u1")->has_value());
    REQUIRE(s.login_networks("u1", 1h, t0() + 10s)->empty());  // the admin's clear starts the count afresh
}

TEST_CASE("the memory store's snapshot brings back counts, guesses, blocks and bars, and only what still matters",
          "[store]") {
    MemoryCounterStore before(100);
    before.record_message("10.0.0.1", 1h, 10, t0());
    before.record_message("10.0.0.1", 1h, 10, t0() + 1s);
    // A key with bytes a line-based file would trip on.
    std::string odd = "quota:us er\n\0x";
    before.record_message(odd, 1h, 10, t0());
    before.record_unknown_recipient("10.0.0.2", "a b@x", 1h, 2, 1h, t0());
    before.record_unknown_recipient("10.0.0.2", "c@x", 1h, 2, 1h, t0() + 1s);  // blocked for an hour
    before.record_guess(GuessKind::failed_login, "10.0.0.3", std::string("u1\0hash", 7), 1h, 5, 1h, t0());
    before.mark_failed_auth("10.0.0.4", t0() + 10min, t0());
    before.record_message("10.0.0.5", 1min, 10, t0());  // over long before the restart below
    std::string text = before.snapshot(t0() + 2min);
    REQUIRE(text.find("\n", 0) != std::string::npos);

    MemoryCounterStore after(100);
    auto restored = after.restore(text, t0() + 3min);
    REQUIRE(restored);
    CHECK(restored->clients == 4);
    CHECK(restored->blocks == 1);
    auto c1 = after.inspect("10.0.0.1", {1h, 1h, 1h}, t0() + 3min);
    CHECK(c1->messages == 2);
    CHECK(after.inspect(odd, {1h, 1h, 1h}, t0() + 3min)->messages == 1);
    auto block = after.block("10.0.0.2", t0() + 3min);
    REQUIRE(block);
    REQUIRE(block->has_value());
    CHECK((*block)->until == t0() + 1s + 1h);
    CHECK(after.inspect("10.0.0.3", {1h, 1h, 1h}, t0() + 3min)->failed_logins == 1);
    CHECK(*after.failed_auth_until("10.0.0.4", t0() + 3min) == t0() + 10min);
    CHECK(after.inspect("10.0.0.5", {1h, 1h, 1h}, t0() + 3min)->messages == 0);
    // The same guess again is not a new one: the guesses came back by name.
    CHECK(after.record_guess(GuessKind::failed_login, "10.0.0.3", std::string("u1\0hash", 7), 1h, 5, 1h,
                             t0() + 4min)->distinct == 1);
}

TEST_CASE("a file that is not a snapshot is refused whole, naming the line", "[store]") {
    MemoryCounterStore s(100);
    CHECK_FALSE(s.restore("", t0()));
    CHECK_FALSE(s.restore("hello\n", t0()));
    auto bad = s.restore("relayguard-memory-store 1\nclient 3130 0 0 99999999999999\nmessage soon\n", t0());
    REQUIRE_FALSE(bad);
    CHECK(bad.error().find("line 3") != std::string::npos);
    CHECK_FALSE(s.restore("relayguard-memory-store 1\nmessage 1\n", t0()));  // a message of no client
    CHECK_FALSE(s.restore("relayguard-memory-store 1\nclient zz 0 0 0\n", t0()));
    CHECK(s.client_count() == 0);  // nothing of a refused file was taken
}
