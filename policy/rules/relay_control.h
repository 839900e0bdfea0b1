// Relay control: anyone may send to a local domain; mail for any other
// domain is relaying and is allowed only to trusted groups, SMTP-AUTH users
// and clients inside a POP-before-SMTP window, or to all in open mode.
#pragma once

#include <optional>
#include <string_view>

#include "policy/decision.h"
#include "policy/policy_settings.h"
#include "policy/pop_window_store.h"
#include "policy/session.h"

namespace relayguard {

class RelayControl {
public:
    RelayControl(const RelaySettings& settings, PopWindowStore* pop_windows)
        : settings_(settings), pop_windows_(pop_windows) {}

    // proceed for a local recipient, permit when relaying is allowed,
    // a refusal otherwise. std::nullopt: the POP window store was needed and
    // could not be reached.
    std::optional<Decision> check(const SessionState& session, std::string_view recipient, TimePoint now) const;

    bool is_local(std::string_view recipient) const;

    static std::string_view domain_of(std::string_view address);
    // The window store's key for a client: its address, or its IPv6 network.
    std::string pop_key(const IpAddress& client) const;

private:
    const RelaySettings& settings_;
    PopWindowStore* pop_windows_;
};

}  // namespace relayguard
