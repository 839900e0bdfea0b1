// Which servers the relay client is withholding its credentials from, because
// the session to them could not be encrypted (delivery.allow_plaintext_auth
// is false). A smart host that stops offering STARTTLS, or whose STARTTLS is
// stripped on the way, defers every message; the admin is told once when
// that starts and once when credentials go out again, not once per message.
// The relay client has no mail path of its own for this (the policy daemon's
// alerts are mailed through it), so the caller logs the two events.
#pragma once

#include <cstddef>
#include <mutex>
#include <set>
#include <string>

namespace relayguard {

class WithheldCredentials {
public:
    // Credentials were withheld from `server`; true when this starts an
    // outage (the first time since they last went out).
    bool withheld(const std::string& server) {
        std::lock_guard lock(mutex_);
        return refusing_.insert(server).second;
    }
    // Credentials went to `server` over an encrypted session (or in
    // plaintext, as allowed); true when this ends an outage.
    bool sent(const std::string& server) {
        std::lock_guard lock(mutex_);
        return refusing_.erase(server) > 0;
    }
    // Servers whose outage goes on now.
    std::size_t outages() const {
        std::lock_guard lock(mutex_);
        return refusing_.size();
    }

private:
    mutable std::mutex mutex_;  // the delivery threads share one
    std::set<std::string> refusing_;
};

}  // namespace relayguard
