// The port for POP-before-SMTP: a successful POP3/IMAP login from an address
// opens a relay window for it. Kept apart from the counters because its
// writers (login hooks, log followers) are not SMTP sessions.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <unordered_map>

#include "common/base/clock.h"
#include "common/base/result.h"

namespace relayguard {

struct PopWindow {
    std::string user;  // whose login opened it, if known
    TimePoint until;
};

class PopWindowStore {
public:
    virtual ~PopWindowStore() = default;
    // A failure: the store cannot be reached; std::nullopt: no window.
    virtual Lookup<PopWindow> find(const std::string& client, TimePoint now) = 0;
    // Opens or extends the window of `client` to `until`.
    // Answers false when the store cannot take it (unreachable, or full).
    virtual bool grant(const std::string& client, const std::string& user, TimePoint until, TimePoint now) = 0;
    // Every open window (at most `max`), for the admin; std::nullopt when
    // the store cannot be reached or cannot list.
    using WindowList = std::vector<std::pair<std::string, PopWindow>>;
    virtual std::optional<WindowList> list(TimePoint now, std::size_t max) = 0;
};

class MemoryPopWindowStore final : public PopWindowStore {
public:
    explicit MemoryPopWindowStore(std::size_t max_windows = 100000) : max_windows_(max_windows) {}
    Lookup<PopWindow> find(const std::string& client, TimePoint now) override;
    bool grant(const std::string& client, const std::string& user, TimePoint until, TimePoint now) override;
    std::optional<WindowList> list(TimePoint now, std::size_t max) override;

private:
    std::mutex mutex_;
    std::size_t max_windows_;
    std::unordered_map<std::string, PopWindow> windows_;
};

}  // namespace relayguard
