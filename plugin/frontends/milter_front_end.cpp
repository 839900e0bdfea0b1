// The milter front end. Macros are requested at negotiation so that Postfix
// and Sendmail send the same facts; SMFIP_RCPT_REJ makes the MTA show us the
// recipients it refused itself, which is how unknown recipients reach the
// harvest guard. Per-connection state is released in xxfi_close, which
// libmilter calls on every path (quit, abort, 421, client drop). Every engine
// call runs under a StageDeadline of listen.stage_timeout, so Redis and DNS
// behind the engine give up in time for the stage to get its fail-mode reply.
#include "plugin/frontends/milter_front_end.h"

#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>

#include "common/base/system_clock.h"
#include "common/net/listen_socket.h"
#include "common/daemon/logging.h"
#include "common/base/stage_deadline.h"
#include "plugin/frontends/decision_log.h"

namespace relayguard::milter {
namespace {

EngineHolder* g_engine = nullptr;
TransactionLedger* g_ledger = nullptr;
std::atomic<std::uint64_t> g_next_connection{0};
// listen.stage_timeout, read once at open() ([listen] applies after a restart).
StageClock::duration g_stage_timeout = std::chrono::seconds(10);
// Sessions whose xxfi_close has not finished: libmilter's worker threads
// outlive smfi_main(), and must be done with the engine and the ledger
// before main() destroys them.
std::atomic<int> g_open_sessions{0};

struct MilterSession {
    SessionState state;
    std::string ledger_key;  // client address/port, as the policy service names the session
    std::string sender;
    // For the connection log.
    std::string helo;
    std::uint32_t messages = 0, recipients = 0, refusals = 0;
    std::string last_rule;
    bool closed_by_us = false;
    bool block_logged = false;  // a harvest block set in this session was logged
    // A close decided at a recipient the MTA had refused itself: Postfix
    // ignores a milter's reply there, so the 421 goes out at the next
    // command whose answer it does take.
    std::optional<SmtpReply> pending_close;
    std::chrono::steady_clock::time_point started = SystemClock::monotonic();
};

// Client text for the session line, cut to a length a log line can hold.
std::string session_field(std::string_view v) { return log_quoted(v.substr(0, 256)); }

void log_session(const MilterSession& s) {
    auto log = connection_log();
    if (!log) return;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(SystemClock::monotonic() - s.started).count();
    const char* result = s.closed_by_us ? "closed" : s.refusals > 0 ? "refused" : "ok";
    log->info("session client={} ptr={} helo={} sasl_user={} messages={} recipients={} refusals={} last_rule={} "
              "result={} duration={}.{:03}s via=milter",
              s.state.client.to_string(), session_field(s.state.client_name), session_field(s.helo),
              session_field(s.state.sasl_user), s.messages, s.recipients, s.refusals, session_field(s.last_rule), result,
              ms / 1000, ms % 1000);
}

// The scope of one stage's engine call: the longest the MTA waits for our
// answer, lookups included. (A prvalue: returned without a copy or move.)
StageDeadline stage() { return StageDeadline(StageDeadline::from_now(g_stage_timeout)); }

MilterSession* session(SMFICTX* ctx) { return static_cast<MilterSession*>(smfi_getpriv(ctx)); }

std::string macro(SMFICTX* ctx, const char* name) {
    const char* v = smfi_getsymval(ctx, const_cast<char*>(name));
    return v ? std::string(v) : std::string();
}

std::string strip_brackets(std::string_view a) {
    if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
    return std::string(a);
}

// libmilter formats the reply text: a '%' must be doubled.
std::string milter_text(const std::string& text) {
    std::string out;
    for (char c : text) {
        out += c;
        if (c == '%') out += '%';
    }
    return out;
}

// The reply the MTA gave a recipient it refused itself, from the macros
// Postfix sends with it: {rcpt_host} the enhanced status ("5.1.1"),
// {rcpt_addr} the text. The code follows the status's class.
SmtpReply mta_reply(const RcptFacts& facts) {
    SmtpReply r;
    r.status = facts.mta_status;
    r.text = facts.mta_text;
    r.code = !facts.mta_status.empty() && facts.mta_status[0] == '4' ? 450 : 550;
    if (facts.mta_status.size() == 3 && facts.mta_status.find('.') == std::string::npos) {
        r.code = std::atoi(facts.mta_status.c_str());  // an MTA that sends the code alone
        r.status.clear();
    }
    return r;
}

sfsistat answer(SMFICTX* ctx, MilterSession& s, const Decision& d, std::string_view stage, std::string_view rcpt = {},
               std::chrono::steady_clock::time_point started = {}) {
    log_decision(s.state, d, DecisionContext{"milter", stage, s.sender, rcpt, started});
    if (d.refused()) {
        ++s.refusals;
        s.last_rule = d.rule;
        if (d.verdict == Verdict::close) s.closed_by_us = true;
    } else if (stage == "rcpt") {
        ++s.recipients;
    } else if (stage == "eom" && d.verdict != Verdict::discard) {
        ++s.messages;
    }
    auto reply = [&](const SmtpReply& r) {
        std::string code = std::to_string(r.code);
        std::string text = milter_text(r.text);
        smfi_setreply(ctx, code.data(), const_cast<char*>(r.status.c_str()), text.data());
    };
    switch (d.verdict) {
        case Verdict::proceed:
        case Verdict::permit:
        case Verdict::hold: return SMFIS_CONTINUE;  // on_eom quarantines
        case Verdict::reject: reply(d.reply); return SMFIS_REJECT;
        case Verdict::tempfail:
        case Verdict::close:  // a 421 reply makes Postfix and Sendmail drop the session
            reply(d.reply);
            return SMFIS_TEMPFAIL;
        case Verdict::discard: return SMFIS_DISCARD;
    }
    return SMFIS_CONTINUE;
}

sfsistat on_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                      unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) {
    // SMFIF_QUARANTINE: a compromised account's mail goes to the MTA's hold queue.
    *pf0 = f0 & (SMFIF_SETSYMLIST | SMFIF_QUARANTINE);
    *pf1 = f1 & SMFIP_RCPT_REJ;
    *pf2 = 0;
    *pf3 = 0;
    if (*pf0 & SMFIF_SETSYMLIST) {
        smfi_setsymlist(ctx, SMFIM_CONNECT, const_cast<char*>("{client_addr} {client_name} {client_ptr} {daemon_name} j _"));
        smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("{auth_authen} {auth_type} {mail_addr} i"));
        smfi_setsymlist(ctx, SMFIM_ENVRCPT, const_cast<char*>("{rcpt_mailer} {rcpt_host} {rcpt_addr} i"));
        smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
    }
    return SMFIS_CONTINUE;
}

// The client's port, as the policy service's client_port gives it.
std::string client_port(_SOCK_ADDR* sa) {
    if (sa != nullptr && sa->sa_family == AF_INET) return std::to_string(ntohs(reinterpret_cast<sockaddr_in*>(sa)->sin_port));
    if (sa != nullptr && sa->sa_family == AF_INET6) return std::to_string(ntohs(reinterpret_cast<sockaddr_in6*>(sa)->sin6_port));
    return "";
}

std::optional<IpAddress> client_address(SMFICTX* ctx, _SOCK_ADDR* sa) {
    char text[INET6_ADDRSTRLEN] = {0};
    if (sa != nullptr && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(sa)->sin_addr, text, sizeof(text));
        return IpAddress::parse(text);
    }
    if (sa != nullptr && sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(sa)->sin6_addr, text, sizeof(text));
        return IpAddress::parse(text);
    }
    return IpAddress::parse(macro(ctx, "{client_addr}"));
}

sfsistat on_connect(SMFICTX* ctx, char* hostname, _SOCK_ADDR* sa) {
    auto addr = client_address(ctx, sa);
    if (!addr) {
        // Local submission (no socket address): nothing to limit per client.
        spdlog::debug("milter: connection without a client address ({}): not filtered", hostname ? hostname : "");
        return SMFIS_ACCEPT;
    }
    auto s = std::make_unique<MilterSession>();
    s->ledger_key = addr->to_string() + "/" + client_port(sa);
    std::string id = "m" + std::to_string(::getpid()) + "-" + std::to_string(++g_next_connection);
    auto started = SystemClock::monotonic();
    auto scope = stage();
    Decision d = g_engine->current()->on_connect(s->state, ConnectFacts{*addr, hostname ? hostname : "", id});
    MilterSession& ref = *s;
    smfi_setpriv(ctx, s.release());
    ++g_open_sessions;
    return answer(ctx, ref, d, "connect", {}, started);
}

// The 421 held in s.pending_close, if any (logged when it was decided).
std::optional<sfsistat> close_now(SMFICTX* ctx, MilterSession& s) {
    if (!s.pending_close) return std::nullopt;
    std::string code = std::to_string(s.pending_close->code);
    std::string text = milter_text(s.pending_close->text);
    smfi_setreply(ctx, code.data(), const_cast<char*>(s.pending_close->status.c_str()), text.data());
    s.closed_by_us = true;
    return SMFIS_TEMPFAIL;
}

sfsistat on_helo(SMFICTX* ctx, char* helo) {
    MilterSession* s = session(ctx);
    if (s == nullptr) return SMFIS_CONTINUE;
    if (auto closed = close_now(ctx, *s)) return *closed;
    s->helo = helo ? helo : "";
    auto scope = stage();
    return answer(ctx, *s, g_engine->current()->on_helo(s->state, helo ? helo : ""), "helo");
}

sfsistat on_envfrom(SMFICTX* ctx, char** argv) {
    MilterSession* s = session(ctx);
    if (s == nullptr || argv == nullptr || argv[0] == nullptr) return SMFIS_CONTINUE;
    if (auto closed = close_now(ctx, *s)) return *closed;
    s->sender = strip_brackets(argv[0]);
    MailFacts facts{s->sender, std::nullopt, macro(ctx, "{auth_authen}")};
    for (char** a = argv + 1; *a != nullptr; ++a) {
        std::string_view arg(*a);
        if (arg.size() > 5 && (arg.substr(0, 5) == "SIZE=" || arg.substr(0, 5) == "size=")) {
            std::uint64_t n = 0;
            auto [end, ec] = std::from_chars(arg.data() + 5, arg.data() + arg.size(), n);
            // A SIZE too large for 64 bits is still a size: the largest one.
            if (ec == std::errc::result_out_of_range) n = UINT64_MAX;
            if (ec == std::errc{} || ec == std::errc::result_out_of_range) facts.declared_size = n;
        }
    }
    auto started = SystemClock::monotonic();
    auto scope = stage();
    auto engine = g_engine->current();
    Decision d = engine->on_mail(s->state, facts);
    // Only a MAIL FROM we let through is one the policy service may trust
    // us on: should Postfix go on past our refusal (a milter timeout with
    // milter_default_action = accept), the policy service checks again.
    g_ledger->milter_mail(s->ledger_key, !d.refused(), engine->now());
    return answer(ctx, *s, d, "mail", {}, started);
}

sfsistat on_envrcpt(SMFICTX* ctx, char** argv) {
    MilterSession* s = session(ctx);
    if (s == nullptr || argv == nullptr || argv[0] == nullptr) return SMFIS_CONTINUE;
    RcptFacts facts{strip_brackets(argv[0]), false, "", ""};
    if (macro(ctx, "{rcpt_mailer}") == "error") {
        facts.rejected_by_mta = true;
        facts.mta_status = macro(ctx, "{rcpt_host}");
        facts.mta_text = macro(ctx, "{rcpt_addr}");
    }
    auto started = SystemClock::monotonic();
    if (!facts.rejected_by_mta) {
        if (auto closed = close_now(ctx, *s)) return *closed;
    } else if (s->pending_close) {
        return SMFIS_CONTINUE;  // decided and logged once already
    }
    auto scope = stage();
    Decision d = g_engine->current()->on_rcpt(s->state, facts);
    if (facts.rejected_by_mta) {
        // The MTA has already refused it with its own reply; ours would be
        // ignored. A block this recipient set is an event of its own, and
        // the refusal is logged with the reply the client really got.
        Decision seen = d;
        DecisionContext context{"milter", "rcpt", s->sender, facts.recipient, started};
        if (d.refused() && d.verdict != Verdict::close && d.rule == "unknown_recipients") {
            // The block is said once a session: later refused recipients of
            // a blocked client find it in force, they do not set it.
            if (!s->block_logged) log_block_set(s->state, d, context);
            s->block_logged = true;
            seen.reply = mta_reply(facts);
            seen.verdict = seen.reply.temporary() ? Verdict::tempfail : Verdict::reject;
            context.observed = false;
        }
        log_decision(s->state, seen, context);
        if (d.refused()) {
            ++s->refusals;
            s->last_rule = d.rule;
        }
        if (d.verdict == Verdict::close) s->pending_close = d.reply;
        return SMFIS_CONTINUE;
    }
    return answer(ctx, *s, d, "rcpt", facts.recipient, started);
}

sfsistat on_header(SMFICTX* ctx, char* name, char* value) {
    MilterSession* s = session(ctx);
    if (s == nullptr) return SMFIS_CONTINUE;
    if (auto closed = close_now(ctx, *s)) return *closed;
    auto scope = stage();
    return answer(ctx, *s, g_engine->current()->on_header(s->state, name ? name : "", value ? value : ""), "header");
}

sfsistat on_body(SMFICTX* ctx, unsigned char*, size_t len) {
    MilterSession* s = session(ctx);
    if (s == nullptr) return SMFIS_CONTINUE;
    auto scope = stage();
    return answer(ctx, *s, g_engine->current()->on_body(s->state, len), "body");
}

// Puts the message in the MTA's hold queue (Postfix: postqueue -j shows it
// "hold"; Sendmail: quarantined) and notes its queue id with the account,
// for `relayguardctl user release`.
void hold(SMFICTX* ctx, DecisionEngine& engine, const MilterSession& s, const Decision& d, const std::string& queue_id) {
    std::string reason = milter_text("relayguard: " + d.detail);
    if (smfi_quarantine(ctx, reason.data()) != MI_SUCCESS) {
        spdlog::error("milter: the MTA would not hold the message {} of {}; it was not negotiated", queue_id,
                      session_field(s.state.sasl_user));
        return;
    }
    bool listed = engine.note_held(s.state, queue_id);
    security_log()->info("held queue_id={} client={} sasl_user={} listed={} via=milter",
                         queue_id.empty() ? "-" : session_field(queue_id), s.state.client.to_string(),
                         session_field(s.state.sasl_user), listed ? "yes" : "no (release it with postsuper -H)");
}

sfsistat on_eom(SMFICTX* ctx) {
    MilterSession* s = session(ctx);
    if (s == nullptr) return SMFIS_CONTINUE;
    if (auto closed = close_now(ctx, *s)) return *closed;
    auto started = SystemClock::monotonic();
    auto scope = stage();
    auto engine = g_engine->current();
    EomFacts facts;
    std::string queue_id = macro(ctx, "i");
    facts.counted_elsewhere = !g_ledger->first_to_count(s->ledger_key, queue_id, engine->now());
    Decision d = engine->on_eom(s->state, facts);
    if (d.verdict == Verdict::hold) hold(ctx, *engine, *s, d, queue_id);
    return answer(ctx, *s, d, "eom", {}, started);
}

sfsistat on_abort(SMFICTX* ctx) {
    if (MilterSession* s = session(ctx)) {
        auto scope = stage();
        g_engine->current()->on_abort(s->state);
    }
    return SMFIS_CONTINUE;
}

sfsistat on_unknown(SMFICTX* ctx, const char*) {
    MilterSession* s = session(ctx);
    if (s == nullptr) return SMFIS_CONTINUE;
    if (auto closed = close_now(ctx, *s)) return *closed;
    auto scope = stage();
    Decision d = g_engine->current()->on_unknown_command(s->state);
    // The MTA refuses the command itself; we only count it, or close.
    if (d.verdict != Verdict::close) return SMFIS_CONTINUE;
    return answer(ctx, *s, d, "unknown");
}

sfsistat on_close(SMFICTX* ctx) {
    std::unique_ptr<MilterSession> s(session(ctx));
    smfi_setpriv(ctx, nullptr);
    if (s) {
        auto scope = stage();
        g_engine->current()->on_close(s->state);
        // The policy service's refusals in this session count too (Postfix
        // asks it at RCPT, where it refuses relaying and recipients).
        auto by_policy = g_ledger->session_closed(s->ledger_key);
        s->refusals += by_policy.count;
        if (by_policy.count > 0) s->last_rule = by_policy.last_rule;
        log_session(*s);
        s.reset();
        --g_open_sessions;
    }
    return SMFIS_CONTINUE;
}

}  // namespace

Status open(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings) {
    g_engine = &engine;
    g_ledger = &ledger;
    auto addr = ListenAddress::parse(settings.milter);
    if (!addr) return Status::failure("bad milter address \"" + settings.milter + "\"");
    static smfiDesc desc{};
    desc.xxfi_name = const_cast<char*>("relayguard");
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = SMFIF_SETSYMLIST | SMFIF_QUARANTINE;
    desc.xxfi_connect = on_connect;
    desc.xxfi_helo = on_helo;
    desc.xxfi_envfrom = on_envfrom;
    desc.xxfi_envrcpt = on_envrcpt;
    desc.xxfi_header = on_header;
    desc.xxfi_body = on_body;
    desc.xxfi_eom = on_eom;
    desc.xxfi_abort = on_abort;
    desc.xxfi_close = on_close;
    desc.xxfi_unknown = on_unknown;
    desc.xxfi_negotiate = on_negotiate;
    std::string spec = addr->milter_spec();
    if (smfi_setconn(spec.data()) != MI_SUCCESS) return Status::failure("libmilter refused the address " + spec);
    g_stage_timeout = settings.stage_timeout;
    // Also libmilter's own timeout for I/O with the MTA (whole seconds). It
    // does not cut an idle session between commands: a test held one 3 s
    // under a 1 s timeout (libmilter 8.17, Postfix 3.7).
    auto timeout = std::chrono::duration_cast<std::chrono::seconds>(settings.stage_timeout).count();
    smfi_settimeout(static_cast<int>(std::max<long long>(timeout, 1)));
    if (smfi_register(desc) != MI_SUCCESS) return Status::failure("smfi_register failed");
    // Bind now, before privileges are dropped, under a umask that gives a
    // unix socket its configured mode from the start.
    mode_t want = static_cast<mode_t>(std::stoul(settings.socket_mode, nullptr, 8));
    mode_t old = ::umask(static_cast<mode_t>(~want & 0777));
    int rc = smfi_opensocket(true);
    ::umask(old);
    if (rc != MI_SUCCESS) return Status::failure("cannot listen on " + settings.milter);
    if (addr->is_unix) return set_socket_group(addr->path, settings.socket_group);
    return Done{};
}

int run() { return smfi_main(); }

bool wait_for_sessions(std::chrono::milliseconds limit) {
    // A plain poll: this runs once, at shutdown, after smfi_main() returned;
    // each worker notices the stop at its next read (libmilter's timeout).
    auto deadline = SystemClock::monotonic() + limit;
    while (g_open_sessions.load() > 0) {
        if (SystemClock::monotonic() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

// smfi_stop() from another thread races with smfi_main()'s start-up (its
// mutexes may not exist yet) and its exit (they may be gone). libmilter's own
// signal thread waits for SIGTERM from the moment it is ready, and the signal
// stays pending until then: the main thread, which blocks SIGTERM and no
// longer waits for it, hands the stop to libmilter that way.
void stop() { ::kill(::getpid(), SIGTERM); }

}  // namespace relayguard::milter
