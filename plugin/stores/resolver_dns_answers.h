// The engine's DNS port answered by the c-ares resolver: what "the sender
// domain exists" and "the client has a (forward-confirmed) PTR" mean in DNS
// queries. Each check answers within the resolver's budget (dns.timeout ×
// dns.tries), and never after the deadline of the SMTP stage asking
// (listen.stage_timeout, common/base/stage_deadline.h); past either the answer is
// a temporary failure, never a 5xx.
#pragma once

#include "common/net/dns_resolver.h"
#include "policy/dns_answers.h"

namespace relayguard {

// "4.3.2.1.in-addr.arpa", or the nibble form under ip6.arpa.
std::string reverse_dns_name(const IpAddress& address);

class ResolverDnsAnswers final : public DnsAnswers {
public:
    explicit ResolverDnsAnswers(DnsResolver& resolver) : resolver_(resolver) {}

    // MX first; a null MX (RFC 7505) says the domain takes no mail; without
    // MX records, an A or AAAA record makes the domain a mail domain (RFC 5321 5.1).
    DnsStatus sender_domain(std::string_view domain) override;
    PtrAnswer client_ptr(const IpAddress& client, bool confirm_forward) override;
    void prepare_client(const IpAddress& client) override;

private:
    DnsResolver& resolver_;
};

}  // namespace relayguard
