// The one log line per decision, written by the front end from the engine's
// Decision. Refusals go to the security log as key=value pairs that
// fail2ban and grep can read:
//   refused client=192.0.2.7 rule=relay stage=rcpt verdict=reject reply="554 5.7.1 Relay access denied" ...
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "common/daemon/metrics.h"
#include "policy/decision.h"
#include "policy/session.h"

namespace relayguard {

struct DecisionContext {
    std::string_view front_end;  // "milter" or "policy"
    std::string_view stage;      // "connect", "mail", "rcpt", ...
    std::string_view sender;
    std::string_view recipient;
    // When the front end asked the engine; unset: not timed.
    std::chrono::steady_clock::time_point started{};
    // false: a refusal logged here is not told to the refusal observer (the
    // front end tells it another decision: see log_block_set).
    bool observed = true;
};

void log_decision(const SessionState& s, const Decision& d, const DecisionContext& ctx);

// A block that `block` (the engine's refusal) set at a recipient the MTA had
// refused itself with its own reply: a security-log line of its own
// ("blocked client=... rule=..."), and the refusal observer (the alerts) is
// told of the block. The front end logs the recipient's refusal with the
// MTA's reply, unobserved.
void log_block_set(const SessionState& s, const Decision& block, const DecisionContext& ctx);

// Client text as a "value" for a key="value" log field: quotes and
// backslashes escaped, control characters replaced, so it cannot end the
// field or the line early.
std::string log_quoted(std::string_view v);

// How many decisions were made since start, by stage, rule and verdict
// ("-" for a decision no rule made).
struct DecisionKey {
    std::string stage, rule, verdict;
    auto operator<=>(const DecisionKey&) const = default;
};
std::map<DecisionKey, std::uint64_t> decision_counts();
// How long the engine took to decide, by stage (front end to answer).
const std::map<std::string, LatencyHistogram>& decision_latency();

// Called with every enforced refusal after it is logged (the alerts listen
// here). Set once at start, before any front end runs.
using RefusalObserver = std::function<void(const SessionState&, const Decision&, const DecisionContext&)>;
void set_refusal_observer(RefusalObserver observer);

}  // namespace relayguard
