// DNS checks: the sender's domain must exist (and not publish a null MX),
// the client must have a PTR record, optionally one that resolves back to
// it. A lookup that fails temporarily only ever gives a temporary reply.
#pragma once

#include <optional>
#include <string_view>

#include "policy/decision.h"
#include "policy/dns_answers.h"
#include "policy/policy_settings.h"
#include "policy/session.h"

namespace relayguard {

class DnsChecks {
public:
    DnsChecks(const DnsCheckSettings& settings, DnsAnswers* answers) : settings_(settings), answers_(answers) {}

    std::optional<Decision> check_sender(const SessionState& s, std::string_view sender) const;
    std::optional<Decision> check_client(SessionState& s) const;
    // At connect: starts the PTR lookup the check will want.
    void prepare(const SessionState& s) const;

private:
    bool checks_client(const SessionState& s) const;
    std::optional<Decision> ask_client(const SessionState& s) const;

    const DnsCheckSettings& settings_;
    DnsAnswers* answers_;
};

}  // namespace relayguard
