// How many SMTP decisions per second one node makes with its counters in
// memory and in Redis, measured in the same run so the ratio means something,
// and how many Redis round trips one SMTP transaction costs.
//
//   store_bench --redis 127.0.0.1:6379 [--threads 8] [--seconds 5] [--clients 1000]
//
// Each transaction is connect, MAIL, RCPT, end of data and close, with the
// message-rate, connection and harvest limits on (limits high enough never to
// refuse), so every stage that can touch the store does.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/redis/redis_client.h"
#include "common/base/system_clock.h"
#include "plugin/stores/redis_counter_store.h"
#include "policy/decision_engine.h"
#include "policy/memory_counter_store.h"

using namespace relayguard;

namespace {

struct Options {
    std::string redis = "127.0.0.1:6379";
    int threads = 8;
    double seconds = 5;
    int clients = 1000;
};

PolicySettings bench_settings() {
    PolicySettings s;
    s.relay.local_domains.add("example.test", false);
    s.limits.message_rate.max = 1'000'000'000;
    s.limits.connections.max = 1'000'000;
    s.limits.unknown_recipients.max = 1'000'000;
    return s;
}

struct Run {
    double transactions_per_second = 0;
    double decisions_per_second = 0;
    std::uint64_t transactions = 0;
    std::uint64_t failures = 0;
};

Run drive(CounterStore& store, const Options& o) {
    SystemClock clock;
    DecisionEngine engine(bench_settings(), store, clock, nullptr, nullptr);
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> done{0}, failed{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < o.threads; ++t) {
        workers.emplace_back([&, t] {
            std::uint64_t n = 0;
            while (!stop) {
                int c = static_cast<int>((n * o.threads + t) % o.clients);
                auto ip = IpAddress::parse("10." + std::to_string(c / 65536 % 256) + "." + std::to_string(c / 256 % 256) +
                                           "." + std::to_string(c % 256));
                SessionState s;
                std::string id = std::to_string(t) + "-" + std::to_string(n);
                bool ok = engine.on_connect(s, ConnectFacts{*ip, "", id}).verdict == Verdict::proceed;
                ok &= engine.on_mail(s, MailFacts{"a@example.org", std::nullopt, ""}).verdict == Verdict::proceed;
                ok &= engine.on_rcpt(s, RcptFacts{"user@example.test", false, "", ""}).verdict == Verdict::proceed;
                ok &= engine.on_eom(s, EomFacts{1000, 1}).verdict == Verdict::proceed;
                engine.on_close(s);
                if (!ok) ++failed;
                ++n;
            }
            done += n;
        });
    }
    auto started = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
    stop = true;
    for (auto& w : workers) w.join();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    Run r;
    r.transactions = done;
    r.failures = failed;
    r.transactions_per_second = static_cast<double>(done) / secs;
    r.decisions_per_second = r.transactions_per_second * 4;  // connect, MAIL, RCPT, end of data
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);  // as the daemon blocks it: a dead Redis means EPIPE
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k == "--redis") o.redis = argv[i + 1];
        else if (k == "--threads") o.threads = std::stoi(argv[i + 1]);
        else if (k == "--seconds") o.seconds = std::stod(argv[i + 1]);
        else if (k == "--clients") o.clients = std::stoi(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: store_bench [--redis HOST:PORT] [--threads N] [--seconds S] [--clients N]\n");
            return 64;
        }
    }
    MemoryCounterStore memory;
    Run mem = drive(memory, o);

    RedisSettings rs;
    rs.servers = {o.redis};
    rs.pool_size = static_cast<std::uint32_t>(o.threads);
    rs.key_prefix = "bench:";
    RedisClient client(rs);
    if (!client.command({"PING"}, "")) {
        std::fprintf(stderr, "store_bench: Redis at %s does not answer: %s\n", o.redis.c_str(), client.last_error().c_str());
        return 1;
    }
    SystemClock clock;
    Run red;
    std::uint64_t commands = 0, before = 0;
    {
        RedisCounterStore store(client, "bench:", std::chrono::seconds(60), clock);
        before = client.round_trips();
        red = drive(store, o);
    }  // the store's destructor sends the last closes
    commands = client.round_trips() - before;
    std::printf("store_bench: %d threads, %d client addresses, %.0f s per store, Redis %s\n", o.threads, o.clients,
                o.seconds, o.redis.c_str());
    std::printf("  %-8s %12s %14s %10s\n", "store", "trans/s", "decisions/s", "failures");
    std::printf("  %-8s %12.0f %14.0f %10llu\n", "memory", mem.transactions_per_second, mem.decisions_per_second,
                static_cast<unsigned long long>(mem.failures));
    std::printf("  %-8s %12.0f %14.0f %10llu\n", "redis", red.transactions_per_second, red.decisions_per_second,
                static_cast<unsigned long long>(red.failures));
    std::printf("  redis/memory throughput ratio: %.3f\n", red.transactions_per_second / mem.transactions_per_second);
    std::printf("  redis requests per SMTP transaction: %.2f (waited for: connect, MAIL, RCPT, end of data; "
                "the closes go out in background batches)\n",
                red.transactions ? static_cast<double>(commands) / static_cast<double>(red.transactions) : 0.0);
    return red.failures + mem.failures == 0 ? 0 : 2;
}
