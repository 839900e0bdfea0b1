// What the load generators in bench/ share: the HOST:PORT they aim at, the
// TCP connection they open, the client addresses they draw, the K workers run
// until a deadline, the totals those add up, and the one RESULT line the
// benchmark runners parse ("RESULT rps=... p50_us=... p99_us=... p999_us=...").
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bench {

// "HOST:PORT" (IPv4); false when malformed.
inline bool parse_target(const std::string& target, std::string& host, int& port) {
    auto colon = target.rfind(':');
    if (colon == std::string::npos) return false;
    host = target.substr(0, colon);
    port = std::atoi(target.c_str() + colon + 1);
    return port > 0;
}

// A TCP connection with Nagle off, as an MTA's; -1 when it cannot be made.
inline int connect_tcp(const std::string& host, int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

// Client n of a population, as 10.x.y.z.
inline std::string client_address(int n) {
    return "10." + std::to_string((n >> 16) & 255) + "." + std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255);
}

struct LoadTotals {
    std::mutex mutex;
    std::vector<double> latencies_us;
    std::map<std::string, long> counts;    // answers seen, by kind
    std::map<std::string, long> failures;  // connections lost, by stage
    long errors = 0;

    void add(const std::vector<double>& lat, const std::map<std::string, long>& seen,
             const std::map<std::string, long>& lost, long failed) {
        std::lock_guard lock(mutex);
        latencies_us.insert(latencies_us.end(), lat.begin(), lat.end());
        for (const auto& [k, n] : seen) counts[k] += n;
        for (const auto& [k, n] : lost) failures[k] += n;
        errors += failed;
    }
};

// Runs worker(index, deadline) on k threads until `seconds` have passed;
// answers the seconds it really took.
template <typename Worker>
double run_workers(int k, double seconds, Worker worker) {
    using Clock = std::chrono::steady_clock;
    auto started = Clock::now();
    auto until = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::vector<std::thread> threads;
    for (int i = 0; i < k; ++i) threads.emplace_back(worker, i, until);
    for (auto& t : threads) t.join();
    return std::chrono::duration<double>(Clock::now() - started).count();
}

inline double percentile(std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return v[k];
}

inline std::string joined(const std::map<std::string, long>& m) {
    std::string out;
    for (const auto& [k, n] : m) out += (out.empty() ? "" : ",") + k + ":" + std::to_string(n);
    return out.empty() ? "-" : out;
}

// rate: "rps" or "tps"; unit: what one latency sample is ("requests",
// "transactions"); kinds: the name of the counts ("actions", "outcomes").
inline void print_result(LoadTotals& t, double elapsed, const char* rate, const char* unit, const char* kinds) {
    auto& lat = t.latencies_us;
    double per_second = static_cast<double>(lat.size()) / elapsed;
    double p50 = percentile(lat, 50), p99 = percentile(lat, 99), p999 = percentile(lat, 99.9);
    std::printf("RESULT %s=%.0f p50_us=%.0f p99_us=%.0f p999_us=%.0f %s=%zu errors=%ld %s=%s lost_at=%s\n", rate,
                per_second, p50, p99, p999, unit, lat.size(), t.errors, kinds, joined(t.counts).c_str(),
                joined(t.failures).c_str());
}

}  // namespace bench
