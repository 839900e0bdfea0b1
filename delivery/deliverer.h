// One delivery attempt of one queued message: route each pending recipient
// (smart hosts in order, or the recipient domain's MX hosts), speak SMTP to
// the first host that answers, and record per recipient: delivered (2xx),
// failed (5xx: that recipient only), or deferred (4xx, timeouts, refused
// connections, and every fault of our own smart host: its name not
// resolving, its AUTH refusing, TLS failing, a session that is not
// encrypted where credentials would cross it readable: those are withheld
// unless delivery.allow_plaintext_auth). The routing settings are read
// at each attempt, so a reload applies to mail already queued.
//
// The sender hears of it (delivery_report.h): a bounce for recipients that
// failed or outlived the message lifetime, one warning once the warning
// delay has passed, and a "relayed" notice where NOTIFY=SUCCESS was asked
// of a next hop that does not speak DSN. Each report is queued before the
// recipients it covers are marked done, so a crash between the two sends a
// report twice, never not at all.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>

#include "common/net/dns_resolver.h"
#include "common/net/smtp_client.h"
#include "delivery/attempt_outcome.h"
#include "delivery/delivery_settings.h"
#include "delivery/destination_state.h"
#include "delivery/pop3_client.h"
#include "delivery/queue/queue_file.h"
#include "delivery/oauth/oauth_tokens.h"
#include "delivery/outages.h"

namespace relayguard {

struct Hop {
    std::string name;     // as configured or as the MX record says
    std::string address;  // IP
    int port = 25;
    bool implicit_tls = false;
};

// Where a group of recipients goes, or why it cannot go anywhere.
struct Route {
    std::string destination;  // the circuit breaker's key
    std::vector<Hop> hops;
    bool permanent = false;   // null MX, no such domain: fail, do not retry
    std::string problem;      // when hops is empty
};

class Deliverer {
public:
    using SettingsSource = std::function<std::shared_ptr<const DeliverySettings>()>;
    // Queues a report (a new message); answers its id or why not.
    using Enqueue = std::function<Result<std::string>(QueuedMessage)>;
    // `clock` times every deadline and a kept session's idleness.
    Deliverer(SettingsSource settings, DnsResolver& resolver, DestinationState& destinations, Enqueue enqueue,
              const Clock& clock);

    // Delivers what it can of the message in `path`; answers when the next
    // attempt is due, or std::nullopt when nothing is left to deliver (the
    // file is then removed).
    std::optional<TimePoint> attempt(const std::string& queue_dir, const std::string& id, TimePoint now);

    // Recipients by result, and reports by kind, since start (for metrics).
    struct Counts {
        std::atomic<std::uint64_t> sent{0}, bounced{0}, deferred{0};
        std::atomic<std::uint64_t> failure_reports{0}, delay_reports{0}, relayed_reports{0};
        // Sessions whose credentials were not sent as they were not encrypted.
        std::atomic<std::uint64_t> credentials_withheld{0};
        // AUTH refusals of the OAuth2 token by the smart host.
        std::atomic<std::uint64_t> oauth_refused{0};
    };
    const Counts& counts() const { return counts_; }
    // Servers credentials are withheld from now (see outages.h).
    std::size_t credential_outages() const { return withheld_.count(); }

    // Where delivery.auth = "oauth2" gets its access tokens.
    void use_oauth(OAuthTokens& tokens) { oauth_ = &tokens; }
    // Why the message's last attempt left recipients pending ("" when it
    // has had none since the start): what `queue list` shows.
    std::string deferral_reason(const std::string& id) const;
    // The message left the queue by an admin's hand (delete, bounce).
    void forget(const std::string& id);

    Route route_smarthosts(const DeliverySettings& s);
    Route route_mx(const DeliverySettings& s, const std::string& domain);

private:
    using Outcome = RecipientOutcome;
    // The pending recipients by where they go ("" for the smart hosts).
    static std::map<std::string, std::vector<std::size_t>> group_by_destination(const DeliverySettings& s,
                                                                             const QueuedMessage& m);
    // The attempt's wall time, and when its whole time is up.
    struct AttemptTime {
        TimePoint now;
        Deadline deadline;
    };
    // Routes and sends one group; a resting destination may bring `next` forward.
    void deliver_group(const DeliverySettings& s, const QueuedMessage& m, const std::string& domain,
                       const std::vector<std::size_t>& rcpts, std::vector<Outcome>& out, AttemptTime when,
                       TimePoint& next);
    // Logs each attempted recipient's result and records the settled ones.
    void record_outcomes(const std::string& path, const QueuedMessage& m, const std::vector<Outcome>& out,
                         const std::vector<std::size_t>& attempted);
    // Queues the reports this attempt owes; answers false when a bounce
    // could not be queued (its recipients then stay pending).
    bool send_reports(const DeliverySettings& s, const std::string& path, const QueuedMessage& m,
                      const std::vector<Outcome>& out, const AttemptSettlement& settlement, TimePoint now);
    // How a transaction ended; a failure when the session broke before MAIL.
    enum class Transaction { done, done_reusable };
    // A connection to `hop` ready for MAIL: greeting, EHLO, STARTTLS, AUTH.
    Result<SmtpConnection> open_session(const DeliverySettings& s, const Hop& hop, Deadline attempt_deadline);
    // POP-before-SMTP: logs into the parent's POP3 server (or finds the
    // login still fresh) before a session to it.
    Result<bool> log_in_at_parent(const DeliverySettings& s, const std::string& relay, Deadline attempt_deadline);
    // SMTP AUTH at the smart host, or the credentials withheld where the
    // session would show them.
    Result<bool> authenticate(const DeliverySettings& s, SmtpConnection& conn, const Hop& hop, const std::string& relay,
                              const std::string& unencrypted_why, const std::function<Deadline()>& step);
    // The same with an OAuth2 access token (XOAUTH2 or OAUTHBEARER), over TLS only.
    Result<bool> authenticate_oauth(const DeliverySettings& s, SmtpConnection& conn, const Hop& hop,
                                    const std::string& relay, const std::string& unencrypted_why,
                                    const std::function<Deadline()>& step);
    // MAIL, RCPT (pipelined where offered), DATA; fills `out` per recipient.
    Result<Transaction> transaction(const DeliverySettings& s, SmtpConnection& conn, const QueuedMessage& m,
                                    const std::vector<std::size_t>& rcpts, std::vector<Outcome>& out,
                                    const std::string& relay, Deadline attempt_deadline);
    // Delivers these recipients through the first hop that takes them,
    // reusing this thread's open session to the same host when there is one.
    // Answers false when no hop could be reached (the destination is down).
    bool send_to(const DeliverySettings& s, const Route& route, const QueuedMessage& m,
                 const std::vector<std::size_t>& rcpts, std::vector<Outcome>& out, Deadline attempt_deadline);
    // A name's addresses, and what went wrong where some or all are missing.
    struct Resolved {
        std::vector<Hop> hops;
        std::string problem;  // "" when every lookup answered
    };
    Resolved resolve(const std::string& name, int port, bool implicit_tls, SteadyTime deadline);
    // Credentials for `server` were not sent as the session is not encrypted
    // (`why`): counts it, alerts once per outage, answers the deferral's words.
    std::string withhold(const std::string& server, const std::string& why, const std::string& what,
                         const std::string& rule = password_rule);
    static const char* const password_rule;  // why a password is withheld
    // Credentials went to `server`: ends its outage, if there was one.
    void credentials_sent(const std::string& server, bool encrypted);

    SettingsSource settings_;
    DnsResolver& resolver_;
    DestinationState& destinations_;
    Enqueue enqueue_;
    const Clock& clock_;
    PopBeforeSmtp pop_;
    Outages withheld_;
    Outages token_refused_;  // smart hosts refusing the OAuth2 token now
    OAuthTokens* oauth_ = nullptr;
    mutable std::mutex reasons_mutex_;
    std::map<std::string, std::string> deferral_reasons_;  // queue id -> last problem
    Counts counts_;
};

}  // namespace relayguard
