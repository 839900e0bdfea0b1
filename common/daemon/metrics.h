// Prometheus metrics over HTTP (prometheus-cpp's exposer, on loopback by
// default): each daemon registers sources, functions that read counters
// which already live where the work is done (the decision log, the Redis
// client, the resolver, the queue) and turn them into metric families at
// each scrape. Nothing on a request's path waits for the exporter.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace prometheus {
class Exposer;
}

namespace relayguard {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// Latency in fixed buckets, lock-free to observe.
class LatencyHistogram {
public:
    static constexpr std::array<double, 12> bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                   0.01,   0.025,   0.05,   0.1,   0.5,    2.0};
    void observe(double seconds);
    prometheus::ClientMetric sample(const MetricLabels& labels) const;
    std::uint64_t count() const { return count_; }

private:
    std::array<std::atomic<std::uint64_t>, bounds.size()> buckets_{};
    std::atomic<std::uint64_t> count_{0};
    std::atomic<std::uint64_t> sum_micros_{0};
};

// A family with one sample per label set.
prometheus::MetricFamily metric_family(const std::string& name, const std::string& help, prometheus::MetricType type);
prometheus::ClientMetric metric_sample(const MetricLabels& labels, double value, prometheus::MetricType type);
// A family of one unlabelled sample: a single counter or gauge.
prometheus::MetricFamily single_metric(const std::string& name, const std::string& help, double value,
                                       prometheus::MetricType type);

class MetricsExporter {
public:
    using Source = std::function<void(std::vector<prometheus::MetricFamily>&)>;
    MetricsExporter();
    ~MetricsExporter();
    void add(Source source);
    // Serves GET /metrics on `address` ("127.0.0.1:9393").
    Result<bool> serve(const std::string& address);
    // The same when `address` is set ("" = no endpoint), logged either way;
    // false when it cannot be served (the daemon then does not start).
    bool serve_if_set(const std::string& address);
    // The text a scrape would get, for tests and relayguardctl.
    std::string render() const;

private:
    class Collector;
    std::shared_ptr<Collector> collector_;
    std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace relayguard
