// Delivery attempts; see the header.
#include "delivery/deliverer.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "common/base/text_codec.h"
#include "delivery/attempt_outcome.h"
#include "delivery/reports/delivery_report.h"

namespace relayguard {

namespace {

bool is_ip(const std::string& s) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

Deadline earliest(Deadline a, Deadline b) { return std::min(a, b); }

}  // namespace

Deliverer::Deliverer(SettingsSource settings, DnsResolver& resolver, DestinationState& destinations, Enqueue enqueue,
                     const Clock& clock)
    : settings_(std::move(settings)),
      resolver_(resolver),
      destinations_(destinations),
      enqueue_(std::move(enqueue)),
      clock_(clock),
      pop_(clock) {}

Deliverer::Resolved Deliverer::resolve(const std::string& name, int port, bool implicit_tls, SteadyTime deadline) {
    Resolved r;
    if (is_ip(name)) {
        r.hops.push_back(Hop{name, name, port, implicit_tls});
        return r;
    }
    auto a = resolver_.lookup(name, DnsType::a, deadline);
    for (const auto& record : a.records) r.hops.push_back(Hop{name, record.value, port, implicit_tls});
    if (a.outcome == DnsOutcome::temporary_failure) r.problem = name + ": lookup failed (" + a.why + ")";
    else if (r.hops.empty()) r.problem = name + ": no address";
    return r;
}

Route Deliverer::route_smarthosts(const DeliverySettings& s) {
    Route route;
    route.destination = destination_key(s, "");
    auto deadline = clock_.steady_now() + resolver_.budget();
    for (const auto& entry : s.smarthosts) {
        auto colon = entry.rfind(':');
        std::string host = entry.substr(0, colon);
        if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
        int port = std::stoi(entry.substr(colon + 1));
        auto found = resolve(host, port, port == 465, deadline);
        route.hops.insert(route.hops.end(), found.hops.begin(), found.hops.end());
        if (!found.problem.empty()) route.problem += (route.problem.empty() ? "" : "; ") + found.problem;
    }
    // Never permanent: our own smart host's name not resolving is never the
    // recipient's fault.
    return route;
}

Route Deliverer::route_mx(const DeliverySettings& s, const std::string& domain) {
    Route route;
    route.destination = destination_key(s, domain);
    auto deadline = clock_.steady_now() + resolver_.budget();
    auto mx = resolver_.lookup(domain, DnsType::mx, deadline);
    switch (mx.outcome) {
        case DnsOutcome::no_such_domain:
            route.permanent = true;
            route.problem = "550 5.1.2 recipient domain " + domain + " does not exist";
            return route;
        case DnsOutcome::temporary_failure:
            route.problem = "MX lookup for " + domain + " failed: " + mx.why;
            return route;
        case DnsOutcome::no_data: {
            // No MX: the domain's own address is its implicit MX (RFC 5321 5.1).
            auto found = resolve(domain, s.mx_port, false, deadline);
            route.hops = found.hops;
            route.problem = found.problem;
            route.permanent = route.hops.empty() && found.problem.find("no address") != std::string::npos;
            if (route.permanent) route.problem = "550 5.1.2 recipient domain " + domain + " has no MX and no address";
            return route;
        }
        case DnsOutcome::answer: break;
    }
    auto records = mx.records;
    if (std::all_of(records.begin(), records.end(), [](const DnsRecord& r) { return r.value.empty(); })) {
        route.permanent = true;
        route.problem = "556 5.1.10 recipient domain " + domain + " accepts no mail (null MX)";
        return route;
    }
    std::stable_sort(records.begin(), records.end(),
                     [](const DnsRecord& a, const DnsRecord& b) { return a.preference < b.preference; });
    for (const auto& r : records) {
        if (r.value.empty()) continue;
        auto found = resolve(r.value, s.mx_port, false, deadline);
        route.hops.insert(route.hops.end(), found.hops.begin(), found.hops.end());
        if (!found.problem.empty()) route.problem += (route.problem.empty() ? "" : "; ") + found.problem;
    }
    return route;
}

namespace {

// A session kept open after a delivery, for the next message this thread
// sends to the same host: TCP, TLS and AUTH handshakes per message are most
// of what relaying costs. One per delivery thread, closed after 10 s idle.
struct CachedSession {
    std::string key;
    std::optional<SmtpConnection> conn;
    SteadyTime idle_since;
};
thread_local CachedSession cached;
constexpr auto max_idle = std::chrono::seconds(10);

}  // namespace

const char* const Deliverer::password_rule = "delivery.allow_plaintext_auth is false";

std::string Deliverer::withhold(const std::string& server, const std::string& why, const std::string& what,
                                const std::string& rule) {
    ++counts_.credentials_withheld;
    if (withheld_.started(server)) {
        // Once per outage, where grep and fail2ban find it: the relay client
        // has no mail path of its own to tell the admin by.
        // The way out differs: a password may go in plaintext on a trusted
        // wire if the admin says so; a token never does.
        bool password = rule == password_rule;
        spdlog::error("alert: no encrypted session with {} ({}); credentials withheld, mail deferred until it "
                      "offers TLS again ({})",
                      server, why, password ? "delivery.allow_plaintext_auth = true only on a trusted wire" : rule);
    }
    return "not encrypted (" + why + "); " + what + " not sent: " + rule;
}

void Deliverer::credentials_sent(const std::string& server, bool encrypted) {
    if (withheld_.ended(server)) {
        spdlog::info("alert over: credentials sent to {} again{}; deferred mail goes out at its next attempt", server,
                     encrypted ? " over an encrypted session" : " unencrypted, as delivery.allow_plaintext_auth allows");
    }
}

Result<bool> Deliverer::log_in_at_parent(const DeliverySettings& s, const std::string& relay, Deadline attempt_deadline) {
    using R = Result<bool>;
    // The parent relays for us once we have logged into its POP3 server.
    auto colon = s.pop_server.rfind(':');
    std::string host = s.pop_server.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    int port = std::stoi(s.pop_server.substr(colon + 1));
    std::vector<std::string> addresses;
    auto lookup_deadline = earliest(clock_.steady_now() + resolver_.budget(), attempt_deadline);
    for (const auto& h : resolve(host, port, false, lookup_deadline).hops) addresses.push_back(h.address);
    auto login = pop_.ensure(s, host, addresses, port,
                             earliest(clock_.steady_now() + s.command_timeout, attempt_deadline));
    std::string pop_server = "POP3 server " + s.pop_server;
    switch (login.status) {
        case PopLogin::Status::logged_in:
            if (login.fresh) credentials_sent(pop_server, login.encrypted);
            return true;
        case PopLogin::Status::withheld:
            return R::failure(relay + ": pop-before-smtp at " + login.server + ": " +
                              withhold(pop_server, login.problem, "USER/PASS"));
        case PopLogin::Status::failed:
            break;
    }
    return R::failure(relay + ": pop-before-smtp login failed: " + (login.server.empty() ? "" : login.server + ": ") +
                      login.problem);
}

Result<bool> Deliverer::authenticate(const DeliverySettings& s, SmtpConnection& conn, const Hop& hop,
                                     const std::string& relay, const std::string& unencrypted_why,
                                     const std::function<Deadline()>& step) {
    using R = Result<bool>;
    if (s.auth == SmarthostAuth::oauth2) return authenticate_oauth(s, conn, hop, relay, unencrypted_why, step);
    std::string smarthost_name = "smart host " + hop.name + ":" + std::to_string(hop.port);
    // PLAIN and LOGIN put the password on the wire as it is: only inside
    // TLS, unless the admin said the wire is trusted. CRAM-MD5 never
    // reveals it and may go either way.
    if (conn.auth_reveals_password() && !s.allow_plaintext_auth) {
        (void)conn.command("QUIT", step());
        return R::failure(relay + ": " + withhold(smarthost_name, unencrypted_why, "AUTH"));
    }
    auto auth = conn.authenticate(s.username, s.password, step(), s.allow_plaintext_auth);
    credentials_sent(smarthost_name, conn.encrypted());
    // 535 or 454 from our own smart host: its problem or our settings',
    // never a reason to bounce the mail.
    if (!auth || auth->code != 235) return R::failure(relay + ": AUTH: " + (auth ? auth->text() : auth.error()));
    return true;
}

Result<bool> Deliverer::authenticate_oauth(const DeliverySettings& s, SmtpConnection& conn, const Hop& hop,
                                           const std::string& relay, const std::string& unencrypted_why,
                                           const std::function<Deadline()>& step) {
    using R = Result<bool>;
    std::string smarthost_name = "smart host " + hop.name + ":" + std::to_string(hop.port);
    // A bearer token is a password for its lifetime: never on a plaintext
    // session, whatever allow_plaintext_auth says.
    if (!conn.encrypted()) {
        (void)conn.command("QUIT", step());
        return R::failure(relay + ": " + withhold(smarthost_name, unencrypted_why, "the OAuth2 token",
                                                  "a token is sent over TLS only"));
    }
    if (!oauth_) return R::failure(relay + ": OAuth2: no token source");
    auto token = oauth_->access_token();
    if (!token) {
        (void)conn.command("QUIT", step());
        return R::failure(relay + ": OAuth2: " + token.error());
    }
    auto auth = conn.authenticate_bearer(s.username, *token, hop.name, hop.port, step());
    credentials_sent(smarthost_name, true);
    if (auth && auth->code == 235) {
        if (token_refused_.ended(smarthost_name)) {
            spdlog::info("alert over: {} takes the OAuth2 token for {} again; deferred mail goes out at its next attempt",
                         smarthost_name, s.username);
        }
        return true;
    }
    // 535 or 454: the token is spent or the mailbox may not send: the next
    // attempt gets a new one, and the mail waits, never bounces.
    std::string reply = auth.error();
    if (auth) {
        oauth_->refused(*token);
        reply = std::to_string(auth->code);
        for (const auto& line : auth->lines) reply += " " + line;
        ++counts_.oauth_refused;
        if (token_refused_.started(smarthost_name)) {
            spdlog::error("alert: {} refused the OAuth2 token for {}: {}; mail deferred (relayguardctl oauth status)",
                          smarthost_name, s.username, reply);
        }
    }
    return R::failure(relay + ": AUTH: " + reply);
}

Result<SmtpConnection> Deliverer::open_session(const DeliverySettings& s, const Hop& hop, Deadline attempt_deadline) {
    using R = Result<SmtpConnection>;
    std::string relay = hop.name + "[" + hop.address + "]:" + std::to_string(hop.port);
    std::string helo = mail_host_name(s);
    bool smarthost = s.route == DeliveryRoute::smarthost;
    if (smarthost && s.auth == SmarthostAuth::pop_before_smtp) {
        if (auto login = log_in_at_parent(s, relay, attempt_deadline); !login) return R::failure(login.error());
    }
    auto step = [&] { return earliest(clock_.steady_now() + s.command_timeout, attempt_deadline); };
    TlsOptions tls{s.tls_verify && s.starttls == StartTlsPolicy::required, s.tls_ca_file, hop.name};
    if (hop.implicit_tls) tls.verify = s.tls_verify;
    if (smarthost) {  // our own smart host only: an MX is not told who we are
        tls.cert_file = s.tls_client_cert;
        tls.key_file = s.tls_client_key;
        // A bearer token goes only to the smart host itself: its certificate
        // is checked even where STARTTLS is opportunistic, and a failed check
        // leaves the session plaintext, where the token is withheld.
        if (s.auth == SmarthostAuth::oauth2) tls.verify = s.tls_verify;
    }
    bool smtp_auth = smarthost && (s.auth == SmarthostAuth::smtp_auth || s.auth == SmarthostAuth::oauth2);
    std::string problem;
    std::string unencrypted_why;  // for the log, when the session stays plaintext
    // Opportunistic TLS that fails is tried once more in plaintext.
    for (int plaintext_retry = 0; plaintext_retry < 2; ++plaintext_retry) {
        auto conn = SmtpConnection::open(hop.address, hop.port,
                                         earliest(clock_.steady_now() + s.connect_timeout, attempt_deadline),
                                         hop.implicit_tls, tls);
        if (!conn) return R::failure(relay + ": " + conn.error());
        auto greet = conn->greeting(step());
        if (!greet || greet->code != 220) return R::failure(relay + ": " + (greet ? "greeting " + greet->text() : greet.error()));
        auto hello = conn->hello(helo, step());
        if (!hello || hello->code != 250) return R::failure(relay + ": " + (hello ? "EHLO " + hello->text() : hello.error()));
        bool want_tls = !conn->encrypted() && s.starttls != StartTlsPolicy::off && plaintext_retry == 0;
        if (want_tls && conn->offers("STARTTLS")) {
            auto started = conn->start_tls(tls, step());
            if (!started || started->code != 220) {
                std::string why = started ? started->text() : started.error();
                problem = relay + ": STARTTLS: " + why;
                if (s.starttls == StartTlsPolicy::opportunistic) {
                    unencrypted_why = "STARTTLS failed: " + why;
                    continue;  // again, in plaintext
                }
                return R::failure(problem);
            }
            hello = conn->hello(helo, step());
            if (!hello || hello->code != 250) {
                return R::failure(relay + ": " + (hello ? "EHLO after STARTTLS " + hello->text() : hello.error()));
            }
        } else if (s.starttls == StartTlsPolicy::required && !conn->encrypted()) {
            return R::failure(relay + ": STARTTLS required by delivery.starttls but not offered");
        } else if (!conn->encrypted() && unencrypted_why.empty()) {
            unencrypted_why = s.starttls == StartTlsPolicy::off ? "delivery.starttls is off" : "STARTTLS not offered";
        }
        if (smtp_auth) {
            if (auto auth = authenticate(s, *conn, hop, relay, unencrypted_why, step); !auth) return R::failure(auth.error());
        }
        return std::move(*conn);
    }
    return R::failure(problem);
}

Result<Deliverer::Transaction> Deliverer::transaction(const DeliverySettings& s, SmtpConnection& conn,
                                                      const QueuedMessage& m, const std::vector<std::size_t>& rcpts,
                                                      std::vector<Outcome>& out, const std::string& relay,
                                                      Deadline attempt_deadline) {
    auto step = [&] { return earliest(clock_.steady_now() + s.command_timeout, attempt_deadline); };
    // DSN (RFC 3461) passes to a next hop that speaks it; for one that does
    // not, we answer NOTIFY=SUCCESS ourselves with a "relayed" report.
    bool dsn = conn.offers("DSN");
    std::string mail = "MAIL FROM:<" + m.sender + ">";
    if (dsn && !m.ret.empty()) mail += " RET=" + m.ret;
    if (dsn && !m.envid.empty()) mail += " ENVID=" + m.envid;
    std::vector<std::string> commands{mail};
    for (auto i : rcpts) {
        const auto& r = m.recipients[i];
        std::string rcpt = "RCPT TO:<" + r.address + ">";
        if (dsn && !r.notify.empty()) rcpt += " NOTIFY=" + r.notify;
        if (dsn && !r.orcpt.empty()) rcpt += " ORCPT=" + r.orcpt;
        commands.push_back(rcpt);
    }
    // PIPELINING (RFC 2920): MAIL and every RCPT in one write.
    auto replies = conn.offers("PIPELINING") ? conn.pipeline(commands, step()) : conn.sequence(commands, step());
    if (!replies) {
        return Result<Transaction>::failure(relay + ": " + replies.error());
    }
    const SmtpResponse& mail_reply = (*replies)[0];
    if (!mail_reply.positive()) {
        for (auto i : rcpts) out[i] = Outcome{mail_reply.permanent() ? RecipientState::failed : RecipientState::pending,
                                              mail_reply.text(), relay, dsn, false, true};
        auto reset = conn.command("RSET", step());
        return reset && reset->code == 250 ? Transaction::done_reusable : Transaction::done;
    }
    std::vector<std::size_t> accepted;
    for (std::size_t k = 0; k < rcpts.size(); ++k) {
        const SmtpResponse& r = (*replies)[k + 1];
        auto i = rcpts[k];
        if (r.positive()) {
            accepted.push_back(i);
        } else {
            out[i] = Outcome{r.permanent() ? RecipientState::failed : RecipientState::pending, r.text(), relay, dsn, false, true};
        }
    }
    if (accepted.empty()) {
        auto reset = conn.command("RSET", step());
        return reset && reset->code == 250 ? Transaction::done_reusable : Transaction::done;
    }
    auto data = conn.data(m.content, earliest(clock_.steady_now() + s.command_timeout * 2, attempt_deadline));
    for (auto i : accepted) {
        if (!data) {
            out[i] = Outcome{RecipientState::pending, data.error(), relay, dsn, false};
        } else {
            out[i] = Outcome{data->positive()    ? RecipientState::delivered
                             : data->permanent() ? RecipientState::failed
                                                 : RecipientState::pending,
                             data->text(), relay, dsn, false, true};
        }
    }
    return data ? Transaction::done_reusable : Transaction::done;
}

bool Deliverer::send_to(const DeliverySettings& s, const Route& route, const QueuedMessage& m,
                        const std::vector<std::size_t>& rcpts, std::vector<Outcome>& out, Deadline attempt_deadline) {
    std::string last_problem = route.problem.empty() ? "no host to try" : route.problem;
    for (const auto& hop : route.hops) {
        std::string relay = hop.name + "[" + hop.address + "]:" + std::to_string(hop.port);
        // A session authenticated under other settings is not reused: a
        // reload that forbids plaintext AUTH must not keep one made with it.
        std::string key = relay + "/" + s.username + "/" + std::to_string(static_cast<int>(s.starttls)) + "/" +
                          std::to_string(static_cast<int>(s.auth)) + "/" + s.tls_client_cert + "/" +
                          (s.allow_plaintext_auth ? "plaintext-auth" : "");
        std::optional<SmtpConnection> conn;
        bool reused = false;
        auto now = clock_.steady_now();
        if (cached.conn && cached.key == key && now - cached.idle_since < max_idle) {
            conn = std::move(cached.conn);
            reused = true;
        }
        cached.conn.reset();
        for (int round = 0; round < 2; ++round) {
            if (!conn) {
                auto opened = open_session(s, hop, attempt_deadline);
                if (!opened) {
                    last_problem = opened.error();
                    break;
                }
                conn.emplace(std::move(*opened));
                reused = false;
            }
            auto result = transaction(s, *conn, m, rcpts, out, relay, attempt_deadline);
            if (!result) {
                conn.reset();
                // A kept session the server has closed meanwhile: open a new one.
                if (reused) continue;
                last_problem = result.error();
                break;
            }
            if (*result == Transaction::done_reusable) cached = CachedSession{key, std::move(conn), clock_.steady_now()};
            return true;
        }
    }
    for (auto i : rcpts) out[i] = Outcome{RecipientState::pending, last_problem, ""};
    return false;
}

std::optional<TimePoint> Deliverer::attempt(const std::string& queue_dir, const std::string& id, TimePoint now) {
    auto settings = settings_();
    const DeliverySettings& s = *settings;
    std::string path = queue_dir + "/active/" + id;
    auto read = read_queue_file(path, true);
    if (!read) {
        if (::access(path.c_str(), F_OK) != 0) return std::nullopt;  // deleted meanwhile
        spdlog::error("queue {}: unreadable ({}); moved to corrupt/", id, read.error());
        ::rename(path.c_str(), (queue_dir + "/corrupt/" + id).c_str());
        return std::nullopt;
    }
    const QueuedMessage& m = *read;
    std::vector<Outcome> out(m.recipients.size());
    std::vector<std::size_t> attempted;
    TimePoint next = next_retry(m, s, now);
    Deadline attempt_deadline = clock_.steady_now() + s.attempt_timeout;
    for (const auto& [domain, rcpts] : group_by_destination(s, m)) {
        deliver_group(s, m, domain, rcpts, out, {now, attempt_deadline}, next);
        attempted.insert(attempted.end(), rcpts.begin(), rcpts.end());
    }
    AttemptSettlement settlement = settle_attempt(m, out, attempted, s, now, next);
    if (!send_reports(s, path, m, out, settlement, now)) hold_unannounced_failures(settlement, out);
    record_outcomes(path, m, out, attempted);
    auto next_attempt = settlement.next();
    {
        std::lock_guard lock(reasons_mutex_);
        auto pending = std::find_if(attempted.begin(), attempted.end(),
                                    [&](std::size_t i) { return out[i].state == RecipientState::pending; });
        if (next_attempt && pending != attempted.end()) {
            // "resting after failures" says less than the failure that began the rest.
            const std::string& reply = out[*pending].reply;
            bool resting = reply.find(" is resting after failures") != std::string::npos;
            if (!resting || !deferral_reasons_.count(id)) deferral_reasons_[id] = reply;
        } else {
            deferral_reasons_.erase(id);
        }
    }
    if (!next_attempt) {
        ::unlink(path.c_str());
        sync_directory(queue_dir + "/active");
        spdlog::info("{}: removed (every recipient done)", id);
        return std::nullopt;
    }
    // The next attempt's time is the file's mtime: it survives a restart.
    auto ms = next_attempt->time_since_epoch().count();
    timespec times[2] = {{0, UTIME_OMIT}, {ms / 1000, (ms % 1000) * 1'000'000}};
    ::utimensat(AT_FDCWD, path.c_str(), times, 0);
    return next_attempt;
}

void Deliverer::forget(const std::string& id) {
    std::lock_guard lock(reasons_mutex_);
    deferral_reasons_.erase(id);
}

std::string Deliverer::deferral_reason(const std::string& id) const {
    std::lock_guard lock(reasons_mutex_);
    auto it = deferral_reasons_.find(id);
    return it == deferral_reasons_.end() ? "" : it->second;
}

std::map<std::string, std::vector<std::size_t>> Deliverer::group_by_destination(const DeliverySettings& s,
                                                                              const QueuedMessage& m) {
    std::map<std::string, std::vector<std::size_t>> groups;
    for (std::size_t i = 0; i < m.recipients.size(); ++i) {
        if (m.recipients[i].state != RecipientState::pending) continue;
        groups[s.route == DeliveryRoute::smarthost ? "" : recipient_domain(m.recipients[i].address)].push_back(i);
    }
    return groups;
}

void Deliverer::deliver_group(const DeliverySettings& s, const QueuedMessage& m, const std::string& domain,
                              const std::vector<std::size_t>& rcpts, std::vector<Outcome>& out, AttemptTime when,
                              TimePoint& next) {
    TimePoint now = when.now;
    Route route = s.route == DeliveryRoute::smarthost ? route_smarthosts(s) : route_mx(s, domain);
    if (route.hops.empty()) {
        for (auto i : rcpts) {
            out[i] = Outcome{route.permanent ? RecipientState::failed : RecipientState::pending, route.problem, ""};
        }
        return;
    }
    if (auto resting = destinations_.resting_until(route.destination, now)) {
        for (auto i : rcpts) out[i] = Outcome{RecipientState::pending, route.destination + " is resting after failures", ""};
        next = std::min(next, std::max(*resting, now + std::chrono::seconds(1)));
        return;
    }
    if (send_to(s, route, m, rcpts, out, when.deadline)) {
        destinations_.succeeded(route.destination);
        return;
    }
    TimePoint until = destinations_.failed(route.destination, now, s.retry_interval, s.max_retry_interval);
    spdlog::warn("destination {} unreachable ({}); resting until it is due again in {} s", route.destination,
                 out[rcpts.front()].reply, std::chrono::duration_cast<std::chrono::seconds>(until - now).count());
}

void Deliverer::record_outcomes(const std::string& path, const QueuedMessage& m, const std::vector<Outcome>& out,
                                const std::vector<std::size_t>& attempted) {
    for (auto i : attempted) {
        const auto& o = out[i];
        const auto& r = m.recipients[i];
        const char* status = o.state == RecipientState::delivered ? "sent"
                             : o.state == RecipientState::failed  ? "bounced"
                                                                  : "deferred";
        ++(o.state == RecipientState::delivered ? counts_.sent
           : o.state == RecipientState::failed  ? counts_.bounced
                                                : counts_.deferred);
        spdlog::info("{}: to=<{}> relay={} status={} ({}{})", m.id, r.address, o.relay.empty() ? "none" : o.relay,
                     status, o.expired ? "message lifetime expired; last problem: " : "", o.reply);
        if (o.state != RecipientState::pending && !mark_recipient(path, r, o.state)) {
            spdlog::error("{}: could not record the state of <{}>", m.id, r.address);
        }
    }
}

bool Deliverer::send_reports(const DeliverySettings& s, const std::string& path, const QueuedMessage& m,
                             const std::vector<Outcome>& out, const AttemptSettlement& settlement, TimePoint now) {
    ReportsDue due = reports_due(m, out, settlement, s, mail_host_name(s), now);
    if (due.dropped_failures > 0) {
        spdlog::warn("{}: bounce of a message from the null sender dropped ({} recipient(s))", m.id,
                     due.dropped_failures);
    }
    bool ok = true;
    for (const auto& report : due.reports) {
        auto queued = enqueue_(report_message(s, report, m.content));
        std::string_view kind = report_kind_name(report.kind);
        if (!queued) {
            // A bounce holds its recipients back (see the caller); a warning
            // is tried again at the next attempt; a "relayed" notice cannot
            // hold back mail already delivered, so it is only logged.
            spdlog::error("{}: could not queue the {} report to <{}>: {}", m.id, kind, m.sender, queued.error());
            if (report.kind == ReportKind::failure) ok = false;
            continue;
        }
        spdlog::info("{}: sender notified: {} report {} to <{}> ({} recipient(s))", m.id, kind, *queued, m.sender,
                     report.recipients.size());
        ++(report.kind == ReportKind::failure ? counts_.failure_reports
           : report.kind == ReportKind::delay ? counts_.delay_reports
                                              : counts_.relayed_reports);
        if (report.kind == ReportKind::delay && !mark_warned(path, m)) {
            spdlog::error("{}: could not record that the delay warning was sent", m.id);
        }
    }
    return ok;
}

}  // namespace relayguard
