// What the engine answers at each SMTP stage, and why. Front ends map a
// Decision to their protocol and write the one security log line from it.
#pragma once

#include <string>
#include <vector>

#include "policy/smtp_reply.h"

namespace relayguard {

enum class Verdict {
    proceed,   // nothing to say: let the MTA's own rules go on (policy DUNNO)
    permit,    // relay explicitly authorised (policy OK)
    reject,    // permanent refusal of this command (5xx)
    tempfail,  // temporary refusal of this command (4xx)
    discard,   // accept and silently drop the message
    close,     // refuse and end the session (421)
    hold,      // accept, but keep the message in the MTA's hold queue (an admin releases it)
};

const char* to_string(Verdict v);

struct Decision {
    Verdict verdict = Verdict::proceed;
    SmtpReply reply;     // meaningful for reject, tempfail and close
    std::string rule;    // the rule that decided, e.g. "relay", "message_rate"
    std::string detail;  // what it saw, e.g. "count=11 limit=10 window=3600s"
    // Refusals that rules in warn mode would have made; logged, not enforced.
    std::vector<Decision> warnings;

    bool refused() const {
        return verdict == Verdict::reject || verdict == Verdict::tempfail || verdict == Verdict::close;
    }
};

}  // namespace relayguard
