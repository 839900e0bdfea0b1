// What a reload did, for its reply, its exit status and its log: the changed
// settings now in force, and the changed ones that apply only after a
// restart (their running values stay until then). Shared by both daemons
// and their admin sockets.
#pragma once

#include <string>
#include <vector>

namespace relayguard {

struct ReloadOutcome {
    std::vector<std::string> applied;        // dotted keys, e.g. "limits.message_rate.max"
    std::vector<std::string> needs_restart;  // e.g. "listen.policy", "store.type"

    static std::string list(const std::vector<std::string>& keys) {
        std::string out;
        for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
        return out;
    }
    // What applied: "nothing changed", or "changed KEY, KEY" (the log line's
    // end, after "configuration FILE applied: ").
    std::string changes() const {
        if (applied.empty() && needs_restart.empty()) return "nothing changed";
        return applied.empty() ? "no change that applies now" : "changed " + list(applied);
    }
    // The warning for what did not apply, or "" when all did.
    std::string not_applied() const {
        if (needs_restart.empty()) return "";
        return "NOT applied, needs a restart (the running values stay): " + list(needs_restart);
    }
    // The reply: "configuration reloaded: changed ...; NOT applied, ..."
    std::string text() const {
        std::string out = "configuration reloaded: " + changes();
        if (!needs_restart.empty()) out += "; " + not_applied();
        return out;
    }
};

}  // namespace relayguard
