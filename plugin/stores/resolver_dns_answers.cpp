// DNS facts for the engine, from the resolver; see the header.
#include "plugin/stores/resolver_dns_answers.h"

#include <algorithm>

#include "common/base/stage_deadline.h"
#include "common/base/system_clock.h"

namespace relayguard {

namespace {

// A PTR set can be long; a client needs only one name that confirms.
constexpr std::size_t max_names_confirmed = 10;

bool is_temporary(const DnsResult& r) { return r.outcome == DnsOutcome::temporary_failure; }

// A check's lookups share one deadline: the resolver's budget, or the SMTP
// stage's (listen.stage_timeout) when that comes first. Past it a lookup
// answers a temporary failure, as a timeout always has.
SteadyTime check_deadline(const DnsResolver& resolver) {
    return stage_deadline_or(SystemClock::monotonic() + resolver.budget());
}

}  // namespace

std::string reverse_dns_name(const IpAddress& address) {
    const auto& b = address.bytes();
    std::string out;
    if (address.is_v4()) {
        for (int i = 3; i >= 0; --i) out += std::to_string(b[static_cast<std::size_t>(i)]) + ".";
        return out + "in-addr.arpa";
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        out += hex[b[static_cast<std::size_t>(i)] & 0xf];
        out += '.';
        out += hex[b[static_cast<std::size_t>(i)] >> 4];
        out += '.';
    }
    return out + "ip6.arpa";
}

DnsStatus ResolverDnsAnswers::sender_domain(std::string_view domain) {
    // An address literal ([192.0.2.1]) names no domain to look up.
    if (domain.empty() || domain.front() == '[') return DnsStatus::found;
    auto deadline = check_deadline(resolver_);
    std::string name(domain);
    auto mx = resolver_.lookup(name, DnsType::mx, deadline);
    switch (mx.outcome) {
        case DnsOutcome::answer: {
            bool all_null = std::all_of(mx.records.begin(), mx.records.end(), [](const DnsRecord& r) { return r.value.empty(); });
            return all_null ? DnsStatus::null_mx : DnsStatus::found;
        }
        case DnsOutcome::no_such_domain: return DnsStatus::not_found;
        case DnsOutcome::temporary_failure: return DnsStatus::temporary_failure;
        case DnsOutcome::no_data: break;
    }
    resolver_.prefetch(name, DnsType::aaaa);
    auto a = resolver_.lookup(name, DnsType::a, deadline);
    if (a.outcome == DnsOutcome::answer) return DnsStatus::found;
    auto aaaa = resolver_.lookup(name, DnsType::aaaa, deadline);
    if (aaaa.outcome == DnsOutcome::answer) return DnsStatus::found;
    if (is_temporary(a) || is_temporary(aaaa)) return DnsStatus::temporary_failure;
    return DnsStatus::not_found;
}

PtrAnswer ResolverDnsAnswers::client_ptr(const IpAddress& client, bool confirm_forward) {
    auto deadline = check_deadline(resolver_);
    auto ptr = resolver_.lookup(reverse_dns_name(client), DnsType::ptr, deadline);
    PtrAnswer out;
    switch (ptr.outcome) {
        case DnsOutcome::answer: out.status = DnsStatus::found; break;
        case DnsOutcome::no_such_domain:
        case DnsOutcome::no_data: out.status = DnsStatus::not_found; return out;
        case DnsOutcome::temporary_failure: out.status = DnsStatus::temporary_failure; return out;
    }
    for (const auto& r : ptr.records) out.names.push_back(r.value);
    if (!confirm_forward) return out;
    DnsType family = client.is_v4() ? DnsType::a : DnsType::aaaa;
    std::size_t asked = std::min(out.names.size(), max_names_confirmed);
    for (std::size_t i = 0; i < asked; ++i) resolver_.prefetch(out.names[i], family);
    for (std::size_t i = 0; i < asked && !out.forward_confirmed; ++i) {
        auto forward = resolver_.lookup(out.names[i], family, deadline);
        if (is_temporary(forward)) out.forward_lookup_failed = true;
        for (const auto& r : forward.records) {
            if (IpAddress::parse(r.value) == client) out.forward_confirmed = true;
        }
    }
    if (out.forward_confirmed) out.forward_lookup_failed = false;
    return out;
}

void ResolverDnsAnswers::prepare_client(const IpAddress& client) {
    resolver_.prefetch(reverse_dns_name(client), DnsType::ptr);
}

}  // namespace relayguard
