// The policy delegation request's decision; see the header. The rules of
// which request starts a session or a transaction, and who counts a message,
// are the ones the milter shares through the TransactionLedger.
#include "plugin/frontends/policy_decider.h"

#include <charconv>
#include <optional>

#include "common/daemon/logging.h"
#include "common/base/stage_deadline.h"
#include "plugin/frontends/decision_log.h"

namespace relayguard {
namespace {

std::optional<std::uint64_t> number(std::string_view v) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || v.empty()) return std::nullopt;
    return n;
}

// The MAIL decision repeated at a later stage: its warnings were logged once already.
Decision repeated(const Decision& d) {
    Decision copy = d;
    copy.warnings.clear();
    return copy;
}

}  // namespace

Decision PolicyDecider::decide(PolicyConnection& conn, const PolicyRequest& request,
                               std::chrono::steady_clock::time_point arrival) const {
    auto client = IpAddress::parse(request.get("client_address"));
    if (!client) {
        spdlog::warn("policy: connection {}: unusable client_address \"{}\"; answering DUNNO", conn.id,
                     std::string(request.get("client_address")).substr(0, 64));
        return Decision{};
    }
    // The request's time counts from its arrival, queueing for a decision
    // thread included: past it, Redis and DNS answer at once as failed, and
    // the request gets its fail mode's reply.
    StageDeadline stage(arrival + stage_timeout_);
    // The engine in force for this request: a reload never changes it midway.
    auto engine = engine_.current();
    follow_session(*engine, conn, *client, request);
    std::string_view state = request.get("protocol_state");
    std::string_view instance = request.get("instance");
    bool new_transaction = instance != conn.instance || instance.empty();
    if (new_transaction && (state == "MAIL" || state == "RCPT")) start_transaction(*engine, conn, request, arrival);
    if (state == "MAIL") return repeated(conn.mail_decision);
    if (state == "RCPT") return at_rcpt(*engine, conn, request, arrival);
    if (state == "END-OF-MESSAGE") return at_end_of_message(*engine, conn, request, arrival);
    return Decision{};
}

// A request from another SMTP session than the last one on this connection
// opens that session afresh (Postfix reuses its connection across sessions).
void PolicyDecider::follow_session(DecisionEngine& engine, PolicyConnection& conn, const IpAddress& client,
                                   const PolicyRequest& request) const {
    std::string session_key = client.to_string() + "/" + std::string(request.get("client_port"));
    if (session_key != conn.session_key) {
        std::uint64_t id = conn.id;
        conn = PolicyConnection{};
        conn.id = id;
        conn.session_key = session_key;
        engine.open_session(conn.session,
                            ConnectFacts{client, std::string(request.get("client_name")),
                                         "policy-" + std::to_string(conn.id) + "-" + session_key});
    }
    std::string sasl_user(request.get("sasl_username"));
    if (!sasl_user.empty()) {
        engine.on_auth(conn.session, AuthFacts{true, sasl_user, std::string(request.get("sasl_method"))});
    }
}

void PolicyDecider::start_transaction(DecisionEngine& engine, PolicyConnection& conn, const PolicyRequest& request,
                                      std::chrono::steady_clock::time_point arrival) const {
    conn.instance = std::string(request.get("instance"));
    std::string sender(request.get("sender"));
    auto size = number(request.get("size"));
    MailFacts mail{sender, size && *size > 0 ? size : std::nullopt, std::string(request.get("sasl_username"))};
    mail.rate_checked_elsewhere = ledger_.mail_checked_elsewhere(conn.session_key, conn.instance, engine.now());
    // Without the milter, nothing tells us whether Postfix will ask at
    // END-OF-MESSAGE: the message counts here, once.
    mail.count_at_check = !mail.rate_checked_elsewhere;
    conn.counted_at_rcpt = mail.count_at_check;
    conn.mail_decision = engine.on_mail(conn.session, mail);
    log_decision(conn.session, conn.mail_decision, {"policy", "mail", sender, "", arrival});
    if (conn.mail_decision.refused()) ledger_.policy_refused(conn.session_key, conn.mail_decision.rule, engine.now());
}

// Postfix names the queue file only once it is open: not at the first
// recipient (smtpd_delay_open_until_valid_rcpt), but at later ones and at
// END-OF-MESSAGE.
void PolicyDecider::note_held(DecisionEngine& engine, const PolicyConnection& conn, const Decision& d,
                              const PolicyRequest& request) const {
    if (d.verdict != Verdict::hold) return;
    std::string queue_id(request.get("queue_id"));
    if (queue_id.empty()) return;  // not named yet: END-OF-MESSAGE will
    if (!engine.note_held(conn.session, queue_id)) {
        security_log()->warn("held queue_id={} sasl_user={} listed=no (release it with postsuper -H) via=policy",
                             log_quoted(queue_id), log_quoted(conn.session.sasl_user));
    }
}

Decision PolicyDecider::at_rcpt(DecisionEngine& engine, PolicyConnection& conn, const PolicyRequest& request,
                                std::chrono::steady_clock::time_point arrival) const {
    if (conn.mail_decision.refused()) return repeated(conn.mail_decision);
    std::string recipient(request.get("recipient"));
    Decision d = engine.on_rcpt(conn.session, RcptFacts{recipient, false, "", ""});
    log_decision(conn.session, d, {"policy", "rcpt", request.get("sender"), recipient, arrival});
    if (d.refused()) ledger_.policy_refused(conn.session_key, d.rule, engine.now());
    note_held(engine, conn, d, request);
    return d;
}

Decision PolicyDecider::at_end_of_message(DecisionEngine& engine, PolicyConnection& conn,
                                          const PolicyRequest& request,
                                          std::chrono::steady_clock::time_point arrival) const {
    auto size = number(request.get("size"));
    auto count = number(request.get("recipient_count"));
    EomFacts eom{size, static_cast<std::uint32_t>(count.value_or(0))};
    eom.counted_elsewhere =
        !ledger_.first_to_count(conn.session_key, std::string(request.get("queue_id")), engine.now()) ||
        conn.counted_at_rcpt;
    conn.counted_at_rcpt = false;
    Decision d = engine.on_eom(conn.session, eom);
    log_decision(conn.session, d, {"policy", "eom", request.get("sender"), "", arrival});
    if (d.refused()) ledger_.policy_refused(conn.session_key, d.rule, engine.now());
    note_held(engine, conn, d, request);
    conn.instance.clear();
    return d;
}

}  // namespace relayguard
