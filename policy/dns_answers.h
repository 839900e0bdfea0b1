// The port through which the engine learns DNS facts. The engine only asks
// and interprets; the resolver behind it (c-ares, with its cache and
// timeouts) lives outside the pure core.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "policy/ip_address.h"

namespace relayguard {

enum class DnsStatus {
    found,              // records exist
    not_found,          // NXDOMAIN or no records of the asked types
    null_mx,            // RFC 7505: the domain says it accepts no mail
    temporary_failure,  // timeout, SERVFAIL, resolver down: never a reason for a 5xx
};

struct PtrAnswer {
    DnsStatus status = DnsStatus::temporary_failure;
    std::vector<std::string> names;
    // Some name in `names` resolves back to the client address. Only
    // meaningful when the resolver was asked to confirm.
    bool forward_confirmed = false;
    bool forward_lookup_failed = false;  // the confirmation itself hit a temporary failure
};

class DnsAnswers {
public:
    virtual ~DnsAnswers() = default;
    // Does `domain` have MX, A or AAAA records?
    virtual DnsStatus sender_domain(std::string_view domain) = 0;
    virtual PtrAnswer client_ptr(const IpAddress& client, bool confirm_forward) = 0;
    // Called at connect: the PTR check comes later, so its lookup can start now.
    virtual void prepare_client(const IpAddress& /*client*/) {}
};

}  // namespace relayguard
