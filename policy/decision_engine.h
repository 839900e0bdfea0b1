// The decision engine: one call per SMTP stage, one Decision back. It owns
// the rules and applies them in a fixed order; counters, POP windows, DNS
// answers and the time come in through ports, so the engine itself does no
// I/O and every rule can be tested in microseconds.
//
// Thread safety: one engine serves every session at once; it is immutable
// after construction, and all shared state lives behind the ports.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include "common/base/clock.h"
#include "common/base/result.h"
#include "policy/account_store.h"
#include "policy/counter_store.h"
#include "policy/decision.h"
#include "policy/dns_answers.h"
#include "policy/policy_settings.h"
#include "policy/pop_window_store.h"
#include "policy/rules/auth_failure_guard.h"
#include "policy/rules/connection_limit.h"
#include "policy/rules/dns_checks.h"
#include "policy/rules/failed_command_limit.h"
#include "policy/rules/harvest_guard.h"
#include "policy/rules/hop_count_limit.h"
#include "policy/rules/message_rate_limit.h"
#include "policy/rules/message_size_limit.h"
#include "policy/rules/recipient_limit.h"
#include "policy/rules/relay_control.h"
#include "policy/rules/user_quota.h"
#include "policy/session.h"

namespace relayguard {

class DecisionEngine {
public:
    DecisionEngine(PolicySettings settings, CounterStore& counters, const Clock& clock,
                   PopWindowStore* pop_windows = nullptr, DnsAnswers* dns = nullptr, AccountStore* accounts = nullptr,
                   AccountObserver* account_observer = nullptr);
    DecisionEngine(const DecisionEngine&) = delete;  // the rules refer into settings_
    DecisionEngine& operator=(const DecisionEngine&) = delete;

    const PolicySettings& settings() const { return settings_; }

    // The key a client is counted under: its address, or its network when
    // the settings aggregate (IPv6 /64 by default).
    std::string client_key(const IpAddress& client) const;

    // Classifies the client (groups, exemptions) without touching any
    // counter: for front ends that see no connect (the policy protocol).
    void open_session(SessionState& s, const ConnectFacts& facts) const;

    Decision on_connect(SessionState& s, const ConnectFacts& facts);
    Decision on_helo(SessionState& s, std::string_view helo);
    void on_auth(SessionState& s, const AuthFacts& facts);
    Decision on_mail(SessionState& s, const MailFacts& facts);
    Decision on_rcpt(SessionState& s, const RcptFacts& facts);
    Decision on_header(SessionState& s, std::string_view name, std::string_view value);
    Decision on_body(SessionState& s, std::uint64_t bytes);
    Decision on_eom(SessionState& s, const EomFacts& facts);
    void on_abort(SessionState& s);
    Decision on_unknown_command(SessionState& s);
    // Gives back what the session holds; safe to call more than once.
    void on_close(SessionState& s);

    // What an authentication reported by a source outside the session
    // came to.
    struct AuthReportOutcome {
        // A refusal when this failure blocked the client (or, in warn
        // mode, the warning it would have been); proceed otherwise.
        Decision decision;
        bool counted = false;  // the failure counted towards the client's block
        // The client's trusted groups are barred for relay until then.
        std::optional<TimePoint> groups_barred_until;
        // Networks the account failed from in the window, when counted, and
        // whether this failure reached limits.auth_failures.account_networks.
        std::optional<std::uint32_t> account_networks;
        bool account_alert = false;
        // A successful POP3/IMAP login opened this POP-before-SMTP window.
        std::optional<TimePoint> pop_window_until;
        bool store_unreachable = false;
    };
    AuthReportOutcome on_auth_report(const AuthReport& report);
    // Asked before a login (Dovecot's "allow"): a refusal while the client
    // is blocked for failed logins. A harvest block does not bar logins,
    // and a store that cannot be reached lets the login go on: the login
    // server still checks the password.
    Decision on_auth_attempt(const IpAddress& client);

    // POP-before-SMTP: a POP3/IMAP login from `client` opens relay for
    // relay.pop_window (or `length`) from now. Answers the window's end, or
    // std::nullopt when the window store cannot take it.
    std::optional<TimePoint> open_pop_window(const IpAddress& client, const std::string& user,
                                             std::optional<Duration> length);
    // std::nullopt: the store cannot be reached; an empty inner optional: no window.
    Lookup<PopWindow> pop_window(const IpAddress& client);
    TimePoint now() const { return clock_.now(); }

    // Every counter and block of a client, with its counting key, for the
    // admin; std::nullopt when the store cannot be reached.
    struct ClientReport {
        std::string key;
        ClientCounters counters;
        std::optional<PopWindow> pop_window;
        std::optional<TimePoint> groups_barred_until;  // a reported failed AUTH (relay.auth_failure_window)
        bool exempt_from_limits = false;
        std::string trusted_group;
    };
    std::optional<ClientReport> inspect(const IpAddress& client);
    // An account as the admin sees it: its quotas and their use, the
    // networks it logged in from, its compromised mark. std::nullopt when
    // a store cannot be reached.
    struct AccountReport {
        std::string user;  // as counted (lower case)
        UserQuota quota;
        UserQuota used;  // messages in the last hour and day, recipients in the last day
        std::map<std::string, TimePoint> login_networks;
        std::optional<CompromisedMark> mark;
    };
    std::optional<AccountReport> inspect_account(const std::string& user);
    // Lifts the account's mark; answers the mark (with the queue ids held)
    // that was there. A failure when the account store cannot be reached.
    Lookup<CompromisedMark> clear_account(const std::string& user);
    // The front end held a message of the session's account under
    // `queue_id`; false when it is not listed for `relayguardctl user
    // release` (no mark any more, too many listed, not a queue id).
    bool note_held(const SessionState& s, const std::string& queue_id);

    // Lifts the client's block (harvest or failed logins); whether there was one.
    bool unblock(const IpAddress& client);
    // `ip reset`: unblock, and the client's message count starts again
    // from 0 (its open connections stay: they end by themselves).
    bool reset(const IpAddress& client);

private:
    // Counts a refusal as a failed command and escalates to closing the
    // session when that was one failure too many.
    Decision finish(SessionState& s, Decision d);
    // Counts a refusal the MTA made itself (an unknown command, a recipient
    // it refused); answers `d`, or the close when that was one too many.
    Decision count_mta_failure(SessionState& s, Decision d);
    std::optional<Decision> already_closing(const SessionState& s) const;
    // The size and recipient limits at end of data.
    Decision eom_limits(const SessionState& s, const EomFacts& facts) const;
    // The account quotas at MAIL and RCPT; false when they refused (or the
    // store failed and the fail mode refuses), with `out` saying so.
    bool user_quota_passes(SessionState& s, Decision& out, bool at_rcpt);
    // A front end that may never see end of data (the policy service asked
    // at RCPT only): the transaction's slots are counted now.
    void count_now(SessionState& s);
    // Releases the transaction's message-rate and quota slots, if any, and forgets it.
    void end_transaction(SessionState& s);
    bool store_unreachable(Decision& out, const char* during) const;
    // The refusal for a client under `block`, by the rule that set it.
    Decision block_refusal(const ClientBlock& block, TimePoint now) const;
    bool any_block_rule() const { return harvest_.enabled() || auth_failures_.enabled(); }
    // relay.auth_failure_window: asks once per session whether a source
    // reported a failed AUTH from a trusted-group client about to relay.
    // Answers false when the store could not say and the fail mode refuses.
    bool note_reported_auth_failure(SessionState& s, std::string_view recipient, Decision& out);
    void record_auth_failure(const SessionState& s, const AuthReport& report, TimePoint now,
                             AuthReportOutcome& out);
    bool accounts_watched() const {
        return accounts_ != nullptr && settings_.limits.compromised_accounts.enabled();
    }
    // The network a successful login counts under for max_networks.
    std::string login_network(const IpAddress& client) const;
    // Counts a successful login of `user` from the session's client,
    // marking the account when that was one network too many.
    void record_login(SessionState& s, const std::string& user, TimePoint now);
    void mark_compromised(SessionState& s, const std::string& user, const std::string& reason, TimePoint now);
    // At MAIL and RCPT of an authenticated session: marks on a quota
    // overrun, counts the session's login, and has the message held when
    // the account is marked.
    void watch_account(SessionState& s);
    Decision held(const SessionState& s, Decision d) const;
    bool limits_apply(const SessionState& s) const { return !s.exempt_from_limits; }

    const PolicySettings settings_;
    CounterStore& counters_;
    const Clock& clock_;
    PopWindowStore* pop_windows_;
    AccountStore* accounts_;
    AccountObserver* account_observer_;
    RelayControl relay_;
    MessageRateLimit message_rate_;
    ConnectionLimit connections_;
    HarvestGuard harvest_;
    AuthFailureGuard auth_failures_;
    RecipientLimit recipients_;
    FailedCommandLimit failed_commands_;
    MessageSizeLimit message_size_;
    HopCountLimit hops_;
    UserQuotaLimit user_quota_;
    DnsChecks dns_checks_;
    // Names a failure reported without a password hash, so each counts.
    std::atomic<std::uint64_t> unnamed_failures_{0};
};

}  // namespace relayguard
