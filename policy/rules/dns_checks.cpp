// DNS checks; see the header.
#include "policy/rules/dns_checks.h"

#include "policy/rules/refusal.h"
#include "policy/rules/relay_control.h"

namespace relayguard {

std::optional<Decision> DnsChecks::check_sender(const SessionState& s, std::string_view sender) const {
    if (!settings_.require_sender_domain || answers_ == nullptr || s.exempt_from_dns) return std::nullopt;
    // The null sender <> is how bounces travel: never refuse it for DNS.
    std::string_view domain = RelayControl::domain_of(sender);
    if (sender.empty() || domain.empty()) return std::nullopt;
    std::string d(domain);
    switch (answers_->sender_domain(domain)) {
        case DnsStatus::found: return std::nullopt;
        case DnsStatus::not_found: return refusal("sender_domain", settings_.sender_domain_reply, "domain=" + d + " not found");
        case DnsStatus::null_mx: return refusal("sender_domain", settings_.sender_null_mx_reply, "domain=" + d + " null MX");
        case DnsStatus::temporary_failure:
            return refusal("sender_domain", settings_.sender_domain_tempfail, "domain=" + d + " lookup failed");
    }
    return std::nullopt;
}

bool DnsChecks::checks_client(const SessionState& s) const {
    return (settings_.require_client_ptr || settings_.require_forward_confirmed_ptr) && answers_ != nullptr &&
           !s.exempt_from_dns;
}

void DnsChecks::prepare(const SessionState& s) const {
    if (checks_client(s)) answers_->prepare_client(s.client);
}

std::optional<Decision> DnsChecks::check_client(SessionState& s) const {
    if (!checks_client(s)) return std::nullopt;
    if (s.client_dns_known) return s.client_dns;
    auto verdict = ask_client(s);
    if (!verdict || verdict->verdict != Verdict::tempfail) {
        s.client_dns_known = true;
        s.client_dns = verdict;
    }
    return verdict;
}

std::optional<Decision> DnsChecks::ask_client(const SessionState& s) const {
    bool confirm = settings_.require_forward_confirmed_ptr;
    PtrAnswer a = answers_->client_ptr(s.client, confirm);
    std::string who = "client=" + s.client.to_string();
    switch (a.status) {
        case DnsStatus::found: break;
        case DnsStatus::not_found:
        case DnsStatus::null_mx: return refusal("client_ptr", settings_.ptr_reply, who + " no PTR");
        case DnsStatus::temporary_failure: return refusal("client_ptr", settings_.ptr_tempfail, who + " PTR lookup failed");
    }
    if (!confirm || a.forward_confirmed) return std::nullopt;
    if (a.forward_lookup_failed) return refusal("client_ptr", settings_.ptr_tempfail, who + " forward lookup failed");
    std::string names;
    for (const auto& n : a.names) names += (names.empty() ? "" : ",") + n;
    return refusal("client_ptr", settings_.ptr_mismatch_reply, who + " ptr=" + names + " not forward-confirmed");
}

}  // namespace relayguard
