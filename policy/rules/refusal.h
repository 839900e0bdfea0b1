// Small helpers every rule uses to phrase its answer, so that the verdict
// always follows the configured reply code: a 4xx is a tempfail, a 5xx a
// reject, and a 421 closes the session as SMTP says it must.
#pragma once

#include <optional>
#include <string>

#include "policy/decision.h"
#include "policy/policy_settings.h"

namespace relayguard {

inline Decision refusal(std::string rule, const SmtpReply& reply, std::string detail) {
    Decision d;
    d.verdict = reply.code == 421 ? Verdict::close : reply.temporary() ? Verdict::tempfail : Verdict::reject;
    d.reply = reply;
    d.rule = std::move(rule);
    d.detail = std::move(detail);
    return d;
}

inline Decision permit(std::string rule, std::string detail) {
    Decision d;
    d.verdict = Verdict::permit;
    d.rule = std::move(rule);
    d.detail = std::move(detail);
    return d;
}

// What a rule that asks the store came to: it passes, it refuses (with its
// decision), or the store could not be asked and the fail mode decides.
struct RuleCheck {
    enum class Outcome { pass, refused, store_unreachable };
    Outcome outcome = Outcome::pass;
    Decision refusal;  // when refused

    static RuleCheck passed() { return {}; }
    static RuleCheck refusing(Decision d) { return {Outcome::refused, std::move(d)}; }
    static RuleCheck unreachable() { return {Outcome::store_unreachable, {}}; }
    bool store_unreachable() const { return outcome == Outcome::store_unreachable; }
};

// Puts a rule's refusal into `out`: enforced, or kept as a warning when the
// rule is in warn mode. Answers whether `out` now refuses.
inline bool settle(Decision& out, std::optional<Decision> found, LimitMode mode) {
    if (!found) return false;
    if (mode == LimitMode::warn && found->refused()) {
        out.warnings.push_back(std::move(*found));
        return false;
    }
    auto warnings = std::move(out.warnings);
    out = std::move(*found);
    out.warnings.insert(out.warnings.begin(), warnings.begin(), warnings.end());
    return out.refused();
}

// The same for a rule that asked the store, once it answered.
inline bool settle(Decision& out, RuleCheck check, LimitMode mode) {
    if (check.outcome != RuleCheck::Outcome::refused) return false;
    return settle(out, std::optional<Decision>(std::move(check.refusal)), mode);
}

std::string seconds_text(Duration d);

}  // namespace relayguard
