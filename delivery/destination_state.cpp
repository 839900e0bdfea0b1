// Destination state; see the header. The file holds one line per resting
// destination: "failures until_ms destination".
#include "delivery/destination_state.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/base/text_codec.h"
#include "delivery/queue/queue_file.h"

namespace relayguard {

std::string recipient_domain(const std::string& address) {
    auto at = address.rfind('@');
    return at == std::string::npos ? "" : ascii_lower(std::string_view(address).substr(at + 1));
}

std::string destination_key(const DeliverySettings& s, const std::string& domain) {
    return s.route == DeliveryRoute::smarthost ? "smarthost" : "mx:" + domain;
}

Duration retry_delay(Duration age, Duration min, Duration max) { return std::clamp(age, min, std::max(min, max)); }

namespace {

std::int64_t mtime_ns(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return -1;
    return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

}  // namespace

DestinationState::DestinationState(std::string file) : file_(std::move(file)) {
    std::lock_guard lock(mutex_);
    load_if_changed();
}

void DestinationState::load_if_changed() {
    std::int64_t now_seen = mtime_ns(file_);
    if (now_seen == seen_mtime_ns_) return;
    seen_mtime_ns_ = now_seen;
    entries_.clear();
    std::ifstream in(file_);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        Entry e;
        long long until = 0;
        std::string name;
        if (fields >> e.failures >> until >> name) {
            e.until = TimePoint(Duration(until));
            entries_[name] = e;
        }
    }
}

std::optional<TimePoint> DestinationState::resting_until(const std::string& destination, TimePoint now) {
    std::lock_guard lock(mutex_);
    load_if_changed();
    auto it = entries_.find(destination);
    if (it == entries_.end() || it->second.until <= now) return std::nullopt;
    return it->second.until;
}

TimePoint DestinationState::failed(const std::string& destination, TimePoint now, Duration min, Duration max) {
    std::lock_guard lock(mutex_);
    load_if_changed();
    Entry& e = entries_[destination];
    ++e.failures;
    Duration rest = min;
    for (std::uint32_t i = 1; i < e.failures && rest < max; ++i) rest *= 2;
    e.until = now + std::min(rest, std::max(min, max));
    save();
    return e.until;
}

void DestinationState::succeeded(const std::string& destination) {
    std::lock_guard lock(mutex_);
    load_if_changed();
    if (entries_.erase(destination) > 0) save();
}

std::optional<TimePoint> DestinationState::end_rest(const std::string& destination, TimePoint now) {
    std::lock_guard lock(mutex_);
    load_if_changed();
    auto it = entries_.find(destination);
    if (it == entries_.end()) return std::nullopt;
    std::optional<TimePoint> until;
    if (it->second.until > now) until = it->second.until;
    entries_.erase(it);
    save();
    return until;
}

void DestinationState::save() {
    // A staging name of this process's own: relayd and a queue command may
    // both write.
    std::string tmp = file_ + ".tmp" + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::trunc);
        for (const auto& [name, e] : entries_) {
            out << e.failures << " " << e.until.time_since_epoch().count() << " " << name << "\n";
        }
    }
    std::rename(tmp.c_str(), file_.c_str());
    seen_mtime_ns_ = mtime_ns(file_);
}

}  // namespace relayguard
