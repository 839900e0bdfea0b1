// Every setting the decision engine obeys, with its documented default. The
// config loader fills these from TOML; tests build them by hand. A limit
// whose `max` is empty is off. The limits that cannot hurt legitimate mail
// are on by default, at Postfix's own values where Postfix has one.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "policy/domain_set.h"
#include "policy/ip_group.h"
#include "policy/smtp_reply.h"

namespace relayguard {

using namespace std::chrono_literals;

// enforce: refuse. warn: log what would be refused, refuse nothing.
enum class LimitMode { enforce, warn };

// What a message-rate limit counts: messages accepted at end of data, or
// every transaction that reached the check (MAIL FROM), accepted or not.
enum class CountMode { accepted, attempts };

enum class RelayMode { restricted, open };

// What to do when the counter store cannot be reached.
enum class StoreFailMode { open, tempfail };

struct RelaySettings {
    RelayMode mode = RelayMode::restricted;
    DomainSet local_domains;
    std::vector<IpGroup> trusted_groups;  // may relay
    bool allow_sasl = true;               // SMTP-AUTH users may relay
    bool allow_pop_before_smtp = false;
    Duration pop_window = 30min;
    // An IPv6 login opens relay for its /N: privacy addresses change within
    // the customer's /64 between reading and sending mail.
    int pop_ipv6_prefix = 64;
    // When both groups and AUTH may relay and an AUTH attempt failed in the
    // session, the groups are not consulted: a stolen internal host guessing
    // passwords must not keep relaying on its address.
    bool auth_failure_disables_groups = true;
    // Neither the milter nor the policy protocol hears of a failed AUTH:
    // a source (Dovecot's auth policy requests, an MTA's log) reports it,
    // and the client's address keeps its groups barred for this long.
    Duration auth_failure_window = 10min;
    SmtpReply reply{554, "5.7.1", "Relay access denied"};
};

struct MessageRateSettings {
    std::optional<std::uint32_t> max;
    Duration window = 1h;
    CountMode count = CountMode::accepted;
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{450, "4.7.1", "Too many messages from this client; try again later"};
};

struct ConnectionLimitSettings {
    std::optional<std::uint32_t> max = 50;  // Postfix's smtpd_client_connection_count_limit
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{421, "4.7.0", "Too many concurrent connections from this client"};
};

struct UnknownRecipientSettings {
    std::optional<std::uint32_t> max = 20;  // distinct unknown recipients within `window`
    Duration window = 1h;
    Duration block_time = 1h;
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{450, "4.7.1", "Client blocked: too many unknown recipients; try again later"};
};

struct AuthFailureSettings {
    // Distinct failed logins (user and password) per client within
    // `window`; the one that reaches `max` blocks the client.
    std::optional<std::uint32_t> max = 10;
    Duration window = 1h;
    Duration block_time = 1h;
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{450, "4.7.1", "Client blocked: too many failed logins; try again later"};
    // Failed logins of one account from this many client networks within
    // `window` raise an alert; they never block the account.
    std::optional<std::uint32_t> account_networks = 10;
    // Whether logins are reported to this node ([auth_events]) or may be to
    // another node sharing its Redis store (set by the config loader).
    // Without either nothing can be counted, so no store is asked for a
    // brute-force block or a failed-AUTH bar either.
    bool reported = false;
};

// What one authenticated account (SMTP AUTH user) may send, counted across
// the cluster like the client limits; an empty limit is off.
struct UserQuota {
    std::optional<std::uint32_t> messages_per_hour;
    std::optional<std::uint32_t> messages_per_day;
    std::optional<std::uint32_t> recipients_per_day;
    friend bool operator==(const UserQuota&, const UserQuota&) = default;
};

struct UserQuotaSettings {
    UserQuota defaults;
    std::string overrides_file;  // "" = none
    // From overrides_file, keyed in lower case ("user@example.org",
    // "example.org"), each already whole: the limits a line does not name
    // come from its domain's line, then from the defaults (conf/ merges).
    std::map<std::string, UserQuota> users;
    std::map<std::string, UserQuota> domains;
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{450, "4.7.1", "Sending quota exceeded"};
};

// When an account counts as compromised: its mail is then held in the MTA's
// queue (not refused, so the sending program does not retry elsewhere)
// until an admin releases or clears it.
struct CompromisedAccountSettings {
    // Successful logins from more than this many client networks within
    // `window`; off when empty.
    std::optional<std::uint32_t> max_networks;
    Duration window = 1h;
    int ipv4_prefix = 24;  // a network, for max_networks
    int ipv6_prefix = 48;
    // An account that tries to send this many times one of its quotas
    // within that quota's window (from 2); off when empty.
    std::optional<std::uint32_t> quota_factor;
    // Run by the daemon when an account is marked, with the user and the
    // reason appended (e.g. to disable it in Dovecot); empty: none.
    std::vector<std::string> command;

    bool enabled() const { return max_networks.has_value() || quota_factor.has_value(); }
};

struct RecipientLimitSettings {
    std::optional<std::uint32_t> max = 1000;  // accepted recipients per message (Postfix's smtpd_recipient_limit)
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{452, "4.5.3", "Too many recipients"};
};

struct FailedCommandSettings {
    // Failures allowed per session; the next closes it (Postfix's smtpd_hard_error_limit).
    std::optional<std::uint32_t> max = 20;
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{421, "4.7.0", "Too many failed commands; closing connection"};
};

struct MessageSizeSettings {
    std::optional<std::uint64_t> max;  // bytes, declared (SIZE=) and actual
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{552, "5.3.4", "Message size exceeds fixed limit"};
};

struct HopCountSettings {
    std::optional<std::uint32_t> max = 50;  // Received: headers (Postfix's hopcount_limit)
    LimitMode mode = LimitMode::enforce;
    SmtpReply reply{554, "5.4.6", "Too many hops: mail loop detected"};
};

struct LimitSettings {
    int ipv4_prefix = 32;  // clients are counted per network of this size
    int ipv6_prefix = 64;
    std::optional<IpGroup> exempt;  // exempt from every limit
    MessageRateSettings message_rate;
    ConnectionLimitSettings connections;
    UnknownRecipientSettings unknown_recipients;
    AuthFailureSettings auth_failures;
    UserQuotaSettings user_quotas;
    CompromisedAccountSettings compromised_accounts;
    RecipientLimitSettings recipients;
    FailedCommandSettings failed_commands;
    MessageSizeSettings message_size;
    HopCountSettings hops;
};

struct DnsCheckSettings {
    bool require_sender_domain = false;
    bool require_client_ptr = false;
    bool require_forward_confirmed_ptr = false;
    std::vector<IpGroup> exempt_groups;
    SmtpReply sender_domain_reply{550, "5.1.8", "Sender address rejected: Domain not found"};
    SmtpReply sender_null_mx_reply{550, "5.7.27", "Sender address rejected: Domain does not accept mail"};
    SmtpReply sender_domain_tempfail{451, "4.4.3", "Sender address rejected: Domain lookup failed; try again later"};
    SmtpReply ptr_reply{550, "5.7.25", "Client host rejected: no reverse DNS (PTR) record"};
    SmtpReply ptr_mismatch_reply{550, "5.7.25", "Client host rejected: reverse DNS does not match forward DNS"};
    SmtpReply ptr_tempfail{450, "4.7.25", "Client host rejected: reverse DNS lookup failed; try again later"};
};

struct PolicySettings {
    RelaySettings relay;
    LimitSettings limits;
    DnsCheckSettings dns;
    StoreFailMode store_fail_mode = StoreFailMode::tempfail;
    SmtpReply store_failure_reply{451, "4.3.0", "Temporary policy service failure; try again later"};
};

}  // namespace relayguard
