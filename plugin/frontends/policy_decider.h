// One Postfix policy delegation request turned into the engine's Decision.
// Postfix keeps a policy connection open across many SMTP sessions and asks
// once per RCPT (and at END-OF-MESSAGE when so configured), so what the
// protocol leaves implicit is remembered per connection here: which SMTP
// session (client address and port) and which transaction (`instance`) the
// requests belong to.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "plugin/ops/engine_holder.h"
#include "plugin/frontends/policy_request.h"
#include "plugin/frontends/transaction_ledger.h"
#include "policy/decision.h"
#include "policy/session.h"

namespace relayguard {

// What one policy connection remembers between requests. It travels with
// the connection, which one serving thread at a time has.
struct PolicyConnection {
    std::uint64_t id = 0;     // the connection's number, in logs and session ids
    std::string session_key;  // client address and port of the SMTP session
    std::string instance;     // the current transaction
    SessionState session;
    Decision mail_decision;
    // This service counted the current transaction at its first RCPT; its
    // END-OF-MESSAGE, if Postfix asks there too, does not count it again.
    bool counted_at_rcpt = false;
};

class PolicyDecider {
public:
    // `ledger` is shared with the milter, so a message both report is counted once.
    // `stage_timeout`: the longest a request waits for Redis and DNS, from
    // its arrival (listen.stage_timeout).
    PolicyDecider(EngineHolder& engine, TransactionLedger& ledger, Duration stage_timeout)
        : engine_(engine), ledger_(ledger), stage_timeout_(stage_timeout) {}

    // Every engine call for one request happens inside this function, so a
    // per-request deadline can be put around it alone. `arrival` is when a
    // serving thread took the complete request: decision latencies and the
    // stage deadline are measured from there.
    Decision decide(PolicyConnection& conn, const PolicyRequest& request,
                    std::chrono::steady_clock::time_point arrival) const;

private:
    void follow_session(DecisionEngine& engine, PolicyConnection& conn, const IpAddress& client,
                        const PolicyRequest& request) const;
    void start_transaction(DecisionEngine& engine, PolicyConnection& conn, const PolicyRequest& request,
                           std::chrono::steady_clock::time_point arrival) const;
    void note_held(DecisionEngine& engine, const PolicyConnection& conn, const Decision& d,
                   const PolicyRequest& request) const;
    Decision at_rcpt(DecisionEngine& engine, PolicyConnection& conn, const PolicyRequest& request,
                     std::chrono::steady_clock::time_point arrival) const;
    Decision at_end_of_message(DecisionEngine& engine, PolicyConnection& conn, const PolicyRequest& request,
                               std::chrono::steady_clock::time_point arrival) const;

    EngineHolder& engine_;
    TransactionLedger& ledger_;
    const Duration stage_timeout_;
};

}  // namespace relayguard
