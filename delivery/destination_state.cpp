// Destination state; see the header. The file holds one line per resting
// destination: "failures until_ms destination".
#include "delivery/destination_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/base/text_codec.h"
#include "common/base/unique_fd.h"
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

// The file as last seen: a rename makes a new inode, so two writes within
// one timestamp tick still differ.
std::string identity(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "none";
    return std::to_string(st.st_ino) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_size);
}

// An exclusive lock on "FILE.lock" for a read-change-write of the file:
// relayd and a `queue flush` run beside it never lose each other's change.
class FileLock {
public:
    explicit FileLock(const std::string& path)
        : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) {
        if (fd_) ::flock(fd_.get(), LOCK_EX);  // without the lock file, as before: one process
    }

private:
    UniqueFd fd_;  // the lock goes with the descriptor
};

}  // namespace

DestinationState::DestinationState(std::string file) : file_(std::move(file)) {
    std::lock_guard lock(mutex_);
    load_if_changed();
}

void DestinationState::load_if_changed() {
    std::string now_seen = identity(file_);
    if (now_seen == seen_) return;
    seen_ = now_seen;
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
    FileLock across_processes(file_ + ".lock");
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
    FileLock across_processes(file_ + ".lock");
    load_if_changed();
    if (entries_.erase(destination) > 0) save();
}

std::optional<TimePoint> DestinationState::end_rest(const std::string& destination, TimePoint now) {
    std::lock_guard lock(mutex_);
    FileLock across_processes(file_ + ".lock");
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
    std::string body;
    for (const auto& [name, e] : entries_) {
        body += std::to_string(e.failures) + " " + std::to_string(e.until.time_since_epoch().count()) + " " + name + "\n";
    }
    // A staging name of this process's own, made anew (never through a link).
    std::string tmp = file_ + ".tmp" + std::to_string(::getpid());
    ::unlink(tmp.c_str());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd || !write_all(fd.get(), body) || ::rename(tmp.c_str(), file_.c_str()) != 0) {
        ::unlink(tmp.c_str());
        return;  // kept in memory; the next change tries again
    }
    seen_ = identity(file_);
}

}  // namespace relayguard
