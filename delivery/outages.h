// Which servers are in an outage of one kind now: credentials withheld from
// them because the session could not be encrypted (a smart host that stops
// offering STARTTLS, or whose STARTTLS is stripped on the way), or a smart
// host refusing the relay client's OAuth2 token. Every message to them is
// deferred; the admin is told once when an outage starts and once when it
// ends, not once per message. The relay client has no mail path of its own
// for this (the policy daemon's alerts are mailed through it), so the
// caller logs the two events.
#pragma once

#include <cstddef>
#include <mutex>
#include <set>
#include <string>

namespace relayguard {

class Outages {
public:
    // `server` failed; true when this starts an outage (the first time
    // since it last worked).
    bool started(const std::string& server) {
        std::lock_guard lock(mutex_);
        return refusing_.insert(server).second;
    }
    // `server` worked; true when this ends an outage.
    bool ended(const std::string& server) {
        std::lock_guard lock(mutex_);
        return refusing_.erase(server) > 0;
    }
    // Servers whose outage goes on now.
    std::size_t count() const {
        std::lock_guard lock(mutex_);
        return refusing_.size();
    }

private:
    mutable std::mutex mutex_;  // the delivery threads share one
    std::set<std::string> refusing_;
};

}  // namespace relayguard
