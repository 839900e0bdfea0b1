// Metrics; see the header.
#include "common/daemon/metrics.h"

#include <spdlog/spdlog.h>

#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <limits>

namespace relayguard {

void LatencyHistogram::observe(double seconds) {
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        if (seconds <= bounds[i]) {
            buckets_[i].fetch_add(1, std::memory_order_relaxed);
            break;
        }
    }
    count_.fetch_add(1, std::memory_order_release);
    sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

prometheus::ClientMetric LatencyHistogram::sample(const MetricLabels& labels) const {
    prometheus::ClientMetric m;
    for (const auto& [k, v] : labels) m.label.push_back({k, v});
    // Observers bump a bucket before the count: read the count first, and
    // never let +Inf fall below the buckets counted after it.
    std::uint64_t total = count_.load(std::memory_order_acquire);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        cumulative += buckets_[i].load(std::memory_order_relaxed);
        m.histogram.bucket.push_back({cumulative, bounds[i]});
    }
    total = std::max(total, cumulative);
    m.histogram.sample_count = total;
    m.histogram.bucket.push_back({total, std::numeric_limits<double>::infinity()});
    m.histogram.sample_sum = static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
    return m;
}

prometheus::MetricFamily metric_family(const std::string& name, const std::string& help, prometheus::MetricType type) {
    prometheus::MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = type;
    return f;
}

prometheus::ClientMetric metric_sample(const MetricLabels& labels, double value, prometheus::MetricType type) {
    prometheus::ClientMetric m;
    for (const auto& [k, v] : labels) m.label.push_back({k, v});
    if (type == prometheus::MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    return m;
}

prometheus::MetricFamily single_metric(const std::string& name, const std::string& help, double value,
                                       prometheus::MetricType type) {
    auto family = metric_family(name, help, type);
    family.metric.push_back(metric_sample({}, value, type));
    return family;
}

class MetricsExporter::Collector : public prometheus::Collectable {
public:
    std::vector<prometheus::MetricFamily> Collect() const override {
        std::vector<prometheus::MetricFamily> out;
        std::lock_guard lock(mutex_);
        for (const auto& s : sources_) s(out);
        return out;
    }
    void add(Source s) {
        std::lock_guard lock(mutex_);
        sources_.push_back(std::move(s));
    }

private:
    mutable std::mutex mutex_;
    std::vector<Source> sources_;
};

MetricsExporter::MetricsExporter() : collector_(std::make_shared<Collector>()) {}
MetricsExporter::~MetricsExporter() = default;

void MetricsExporter::add(Source source) { collector_->add(std::move(source)); }

Result<bool> MetricsExporter::serve(const std::string& address) {
    try {
        exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
        exposer_->RegisterCollectable(collector_);
    } catch (const std::exception& e) {
        return Result<bool>::failure(std::string("cannot serve metrics on ") + address + ": " + e.what());
    }
    return true;
}

std::string MetricsExporter::render() const {
    prometheus::TextSerializer text;
    return text.Serialize(collector_->Collect());
}

bool MetricsExporter::serve_if_set(const std::string& address) {
    if (address.empty()) return true;
    if (auto served = serve(address); !served) {
        spdlog::critical("metrics: {}", served.error());
        return false;
    }
    spdlog::info("metrics: serving /metrics on {}", address);
    return true;
}

}  // namespace relayguard
