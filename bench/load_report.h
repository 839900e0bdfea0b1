// What the load generators in bench/ share: the totals their worker threads
// add up, the client addresses they draw, and the one RESULT line the
// benchmark runners parse ("RESULT rps=... p50_us=... p99_us=... p999_us=...").
#pragma once

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace bench {

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
