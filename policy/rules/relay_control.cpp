// Relay control; see the header. The order of the checks is the order of
// the log's reasons: local domain, open mode, AUTH, group, POP window.
#include "policy/rules/relay_control.h"

#include "policy/rules/refusal.h"

namespace relayguard {

std::string_view RelayControl::domain_of(std::string_view address) {
    if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
        address = address.substr(1, address.size() - 2);
    }
    auto at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    return address.substr(at + 1);
}

bool RelayControl::is_local(std::string_view recipient) const {
    if (recipient.size() >= 2 && recipient.front() == '<' && recipient.back() == '>') {
        recipient = recipient.substr(1, recipient.size() - 2);
    }
    auto at = recipient.rfind('@');
    // A bare local part ("postmaster") is delivered here by every MTA.
    if (at == std::string_view::npos) return true;
    std::string_view local_part = recipient.substr(0, at);
    // "user%other.example@local" and "other!user@local" are routed onwards by
    // MTAs that honour the percent hack or bang paths, and a quoted "a@b" local
    // part by some: each would relay through a local domain. Treat them as
    // foreign so only clients allowed to relay may use them.
    if (local_part.find_first_of("%!@") != std::string_view::npos) return false;
    if (!local_part.empty() && local_part.front() == '@') return false;  // source route
    return settings_.local_domains.contains(recipient.substr(at + 1));
}

std::string RelayControl::pop_key(const IpAddress& client) const {
    int prefix = settings_.pop_ipv6_prefix;
    if (client.is_v4() || prefix >= 128) return client.to_string();
    return client.masked(prefix).to_string() + "/" + std::to_string(prefix);
}

std::optional<Decision> RelayControl::check(const SessionState& s, std::string_view recipient, TimePoint now) const {
    if (is_local(recipient)) return Decision{Verdict::proceed, {}, "relay", "local domain", {}};
    if (settings_.mode == RelayMode::open) return permit("relay", "open relay mode");
    if (settings_.allow_sasl && s.auth == AuthState::succeeded) return permit("relay", "sasl user " + s.sasl_user);
    bool groups_barred = settings_.allow_sasl && settings_.auth_failure_disables_groups && s.auth == AuthState::failed;
    if (!s.trusted_group.empty() && !groups_barred) return permit("relay", "trusted group " + s.trusted_group);
    if (settings_.allow_pop_before_smtp && pop_windows_ != nullptr) {
        auto window = pop_windows_->find(pop_key(s.client), now);
        if (!window) return std::nullopt;
        if (*window) {
            std::string who = (*window)->user.empty() ? "" : " user " + (*window)->user;
            return permit("relay", "pop-before-smtp window" + who + " for " + seconds_text((*window)->until - now));
        }
    }
    std::string why = groups_barred && !s.trusted_group.empty() ? "failed AUTH disables trusted group " + s.trusted_group
                                                                 : "client may not relay";
    return refusal("relay", settings_.reply, "recipient domain not local; " + why);
}

}  // namespace relayguard
