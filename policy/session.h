// What the engine knows of one SMTP session: the facts a front end reports at
// each stage, and the state the engine keeps between stages. The front end
// owns the SessionState and hands it back at every call; the engine keeps no
// per-session memory of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "policy/decision.h"
#include "policy/ip_address.h"

namespace relayguard {

struct ConnectFacts {
    IpAddress client;
    std::string client_name;    // the MTA's verified name, or empty / "unknown"
    std::string connection_id;  // unique per connection on this node
};

struct AuthFacts {
    bool succeeded = false;
    std::string user;
    std::string mechanism;
};

struct MailFacts {
    std::string sender;                        // without angle brackets; empty for <>
    std::optional<std::uint64_t> declared_size;  // ESMTP SIZE=
    std::string sasl_user;                     // the MTA reports AUTH here (milter {auth_authen})
};

struct RcptFacts {
    std::string recipient;
    // The MTA already refused this recipient (milter SMFIP_RCPT_REJ), e.g. as
    // unknown; `mta_status` is its enhanced status code, "5.1.1".
    bool rejected_by_mta = false;
    std::string mta_status;
};

struct EomFacts {
    std::optional<std::uint64_t> size;  // the final size when the MTA knows it
    std::uint32_t recipients = 0;       // the MTA's count when it has one
};

enum class AuthState { none, succeeded, failed };

struct Transaction {
    bool open = false;
    std::string sender;
    std::uint32_t recipients = 0;  // accepted so far
    std::uint64_t body_bytes = 0;
    std::uint32_t received_headers = 0;
    bool rate_checked = false;
    bool refused = false;  // an end-of-message refusal is already decided
};

struct SessionState {
    IpAddress client;
    std::string client_key;  // the client's counting key (address or aggregated network)
    std::string client_name;
    std::string connection_id;
    bool exempt_from_limits = false;
    bool exempt_from_dns = false;
    std::string trusted_group;  // the relay group the client is in, if any
    AuthState auth = AuthState::none;
    std::string sasl_user;
    bool holds_connection_slot = false;
    std::uint32_t failed_commands = 0;
    // The PTR check's verdict once it is definite (a temporary failure is
    // asked again at the next MAIL): the client's DNS does not change mid-session.
    std::optional<std::optional<Decision>> client_dns;
    Transaction tx;
};

}  // namespace relayguard
