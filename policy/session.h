// What the engine knows of one SMTP session: the facts a front end reports at
// each stage, and the state the engine keeps between stages. The front end
// owns the SessionState and hands it back at every call; the engine keeps no
// per-session memory of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"

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

// An authentication as a source outside the SMTP session reported it
// (Dovecot's auth policy requests, an MTA's log): POP3, IMAP and SMTP
// AUTH alike, with or without a session of ours to tie it to.
struct AuthReport {
    IpAddress client;
    std::string user;         // empty when the source does not say (Cyrus SASL failures in Postfix's log)
    std::string password_id;  // names the password tried (Dovecot's salted pwhash); "" when unknown
    std::string protocol;     // "smtp", "pop3", "imap", ... as the source names it
    bool succeeded = false;
};

struct MailFacts {
    std::string sender;                        // without angle brackets; empty for <>
    std::optional<std::uint64_t> declared_size;  // ESMTP SIZE=
    std::string sasl_user;                     // the MTA reports AUTH here (milter {auth_authen})
    // Another front end already checked (and, counting attempts, recorded)
    // the message rate for this transaction: the rate rule is skipped, so
    // one message is never counted or checked twice.
    bool rate_checked_elsewhere = false;
    // Count the message now, at the check, whatever the counting rule: the
    // front end may never be told how the transaction ends (the policy
    // service asked at RCPT only).
    bool count_at_check = false;
};

struct RcptFacts {
    std::string recipient;
    // The MTA already refused this recipient (milter SMFIP_RCPT_REJ), e.g. as
    // unknown; `mta_status` is its enhanced status code, "5.1.1" (or a bare
    // reply code from an MTA that gives none), `mta_text` its reply text.
    bool rejected_by_mta = false;
    std::string mta_status;
    std::string mta_text;
};

struct EomFacts {
    std::optional<std::uint64_t> size;  // the final size when the MTA knows it
    std::uint32_t recipients = 0;       // the MTA's count when it has one
    // Another front end already counted this message (same queue id).
    bool counted_elsewhere = false;
};

enum class AuthState { none, succeeded, failed };

// A slot a transaction holds in an account's quota (policy/rules/user_quota.h),
// until end of data commits it or an abort releases it.
struct QuotaSlot {
    std::string key;
    std::string reservation;  // empty: nothing to release, one to count at commit (warn mode)
    Duration window{};
    std::uint32_t limit = 0;
};

struct Transaction {
    bool open = false;
    std::string sender;
    std::uint32_t recipients = 0;  // accepted so far
    std::uint64_t body_bytes = 0;
    std::uint32_t received_headers = 0;
    bool rate_checked = false;
    bool refused = false;  // an end-of-message refusal is already decided
    // The message-rate slot this transaction holds (counting accepted mail),
    // until end of data commits it or an abort releases it.
    std::string reservation;
    std::vector<QuotaSlot> quota_slots;
    std::uint32_t quota_slots_named = 0;  // to name each slot apart
    // The account's quotas are counted by this front end (not another that
    // saw the same transaction), and at the check (no end of data to wait for).
    bool quota_counted_here = false;
    bool counted_at_check = false;
    // A quota tried past limits.compromised_accounts.quota_factor times
    // itself: the quota's name, for the mark's reason.
    std::string quota_overrun;
    // The account is marked compromised: the message is to be held.
    std::string hold_reason;
    bool mark_checked = false;  // the account's mark was looked up for this transaction
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
    // Whether the store was asked for a failed AUTH from this address
    // reported by another source (relay.auth_failure_window).
    bool auth_failure_checked = false;
    // The session's successful login was counted against
    // limits.compromised_accounts.max_networks.
    bool login_recorded = false;
    bool holds_connection_slot = false;
    std::uint32_t transactions = 0;  // MAIL FROMs seen, to name each reservation
    std::uint32_t failed_commands = 0;
    // The PTR check's verdict once it is definite (a temporary failure is
    // asked again at the next MAIL): the client's DNS does not change
    // mid-session. `client_dns` is the refusal, if the verdict was one.
    bool client_dns_known = false;
    std::optional<Decision> client_dns;
    Transaction tx;
};

}  // namespace relayguard
