// In-memory POP-before-SMTP windows for a single node.
#include "policy/pop_window_store.h"

#include <algorithm>

namespace relayguard {

Lookup<PopWindow> MemoryPopWindowStore::find(const std::string& client, TimePoint now) {
    std::lock_guard lock(mutex_);
    auto it = windows_.find(client);
    if (it == windows_.end() || it->second.until <= now) return std::optional<PopWindow>{};
    return std::optional<PopWindow>{it->second};
}

bool MemoryPopWindowStore::grant(const std::string& client, const std::string& user, TimePoint until, TimePoint now) {
    std::lock_guard lock(mutex_);
    if (windows_.size() >= max_windows_ && !windows_.count(client)) {
        std::erase_if(windows_, [now](const auto& kv) { return kv.second.until <= now; });
        if (windows_.size() >= max_windows_) return false;
    }
    auto& w = windows_[client];
    if (until > w.until) w.until = until;
    if (!user.empty()) w.user = user;
    return true;
}

std::optional<PopWindowStore::WindowList> MemoryPopWindowStore::list(TimePoint now, std::size_t max) {
    std::lock_guard lock(mutex_);
    WindowList out;
    for (const auto& [client, w] : windows_) {
        if (w.until > now && out.size() < max) out.emplace_back(client, w);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return out;
}

}  // namespace relayguard
