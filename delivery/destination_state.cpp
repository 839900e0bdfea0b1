// Destination state; see the header. The file holds one line per resting
// destination: "failures until_ms destination".
#include "delivery/destination_state.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "delivery/queue/queue_file.h"

namespace relayguard {

Duration retry_delay(Duration age, Duration min, Duration max) { return std::clamp(age, min, std::max(min, max)); }

DestinationState::DestinationState(std::string file) : file_(std::move(file)) {
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
    auto it = entries_.find(destination);
    if (it == entries_.end() || it->second.until <= now) return std::nullopt;
    return it->second.until;
}

TimePoint DestinationState::failed(const std::string& destination, TimePoint now, Duration min, Duration max) {
    std::lock_guard lock(mutex_);
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
    if (entries_.erase(destination) > 0) save();
}

void DestinationState::save() {
    std::string tmp = file_ + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        for (const auto& [name, e] : entries_) {
            out << e.failures << " " << e.until.time_since_epoch().count() << " " << name << "\n";
        }
    }
    std::rename(tmp.c_str(), file_.c_str());
}

}  // namespace relayguard
