// Delivery attempts; see the header.
#include "delivery/deliverer.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>

namespace relayguard {

namespace {

std::string domain_of(const std::string& address) {
    auto at = address.rfind('@');
    std::string d = at == std::string::npos ? "" : address.substr(at + 1);
    for (auto& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return d;
}

bool is_ip(const std::string& s) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, s.c_str(), buf) == 1 || ::inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

std::string hostname() {
    char h[256] = {};
    ::gethostname(h, sizeof h - 1);
    return h;
}

Deadline earliest(Deadline a, Deadline b) { return std::min(a, b); }

}  // namespace

Deliverer::Deliverer(SettingsSource settings, DnsResolver& resolver, DestinationState& destinations)
    : settings_(std::move(settings)), resolver_(resolver), destinations_(destinations) {}

std::vector<Hop> Deliverer::resolve(const std::string& name, int port, bool implicit_tls, SteadyTime deadline,
                                    std::string& problem) {
    std::vector<Hop> hops;
    if (is_ip(name)) {
        hops.push_back(Hop{name, name, port, implicit_tls});
        return hops;
    }
    auto a = resolver_.lookup(name, DnsType::a, deadline);
    for (const auto& r : a.records) hops.push_back(Hop{name, r.value, port, implicit_tls});
    if (a.outcome == DnsOutcome::temporary_failure) problem = name + ": lookup failed (" + a.why + ")";
    else if (hops.empty()) problem = name + ": no address";
    return hops;
}

Route Deliverer::route_smarthosts(const DeliverySettings& s) {
    Route route;
    route.destination = "smarthost";
    auto deadline = std::chrono::steady_clock::now() + resolver_.budget();
    for (const auto& entry : s.smarthosts) {
        auto colon = entry.rfind(':');
        std::string host = entry.substr(0, colon);
        if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
        int port = std::stoi(entry.substr(colon + 1));
        std::string problem;
        auto hops = resolve(host, port, port == 465, deadline, problem);
        route.hops.insert(route.hops.end(), hops.begin(), hops.end());
        if (!problem.empty()) route.problem += (route.problem.empty() ? "" : "; ") + problem;
    }
    // Never permanent: our own smart host's name not resolving is never the
    // recipient's fault.
    return route;
}

Route Deliverer::route_mx(const DeliverySettings& s, const std::string& domain) {
    Route route;
    route.destination = "mx:" + domain;
    auto deadline = std::chrono::steady_clock::now() + resolver_.budget();
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
            std::string problem;
            route.hops = resolve(domain, s.mx_port, false, deadline, problem);
            route.problem = problem;
            route.permanent = route.hops.empty() && problem.find("no address") != std::string::npos;
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
        std::string problem;
        auto hops = resolve(r.value, s.mx_port, false, deadline, problem);
        route.hops.insert(route.hops.end(), hops.begin(), hops.end());
        if (!problem.empty()) route.problem += (route.problem.empty() ? "" : "; ") + problem;
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
    std::chrono::steady_clock::time_point idle_since;
};
thread_local CachedSession cached;
constexpr auto max_idle = std::chrono::seconds(10);

}  // namespace

Result<SmtpConnection> Deliverer::open_session(const DeliverySettings& s, const Hop& hop, Deadline attempt_deadline) {
    using R = Result<SmtpConnection>;
    std::string relay = hop.name + "[" + hop.address + "]:" + std::to_string(hop.port);
    std::string helo = s.helo_name.empty() ? hostname() : s.helo_name;
    bool smarthost = s.route == DeliveryRoute::smarthost;
    auto step = [&] { return earliest(std::chrono::steady_clock::now() + s.command_timeout, attempt_deadline); };
    TlsOptions tls{s.tls_verify && s.starttls == StartTlsPolicy::required, s.tls_ca_file, hop.name};
    if (hop.implicit_tls) tls.verify = s.tls_verify;
    std::string problem;
    // Opportunistic TLS that fails is tried once more in plaintext.
    for (int plaintext_retry = 0; plaintext_retry < 2; ++plaintext_retry) {
        auto conn = SmtpConnection::open(hop.address, hop.port,
                                         earliest(std::chrono::steady_clock::now() + s.connect_timeout, attempt_deadline),
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
                problem = relay + ": STARTTLS: " + (started ? started->text() : started.error());
                if (s.starttls == StartTlsPolicy::opportunistic) continue;  // again, in plaintext
                return R::failure(problem);
            }
            hello = conn->hello(helo, step());
            if (!hello || hello->code != 250) {
                return R::failure(relay + ": " + (hello ? "EHLO after STARTTLS " + hello->text() : hello.error()));
            }
        } else if (s.starttls == StartTlsPolicy::required && !conn->encrypted()) {
            return R::failure(relay + ": STARTTLS required by delivery.starttls but not offered");
        }
        if (smarthost && s.auth == SmarthostAuth::smtp_auth) {
            auto auth = conn->authenticate(s.username, s.password, step());
            // 535 or 454 from our own smart host: its problem or our
            // settings', never a reason to bounce the mail.
            if (!auth || auth->code != 235) return R::failure(relay + ": AUTH: " + (auth ? auth->text() : auth.error()));
        }
        return std::move(*conn);
    }
    return R::failure(problem);
}

Deliverer::Transaction Deliverer::transaction(const DeliverySettings& s, SmtpConnection& conn, const QueuedMessage& m,
                                              const std::vector<std::size_t>& rcpts, std::vector<Outcome>& out,
                                              const std::string& relay, Deadline attempt_deadline, std::string& problem) {
    auto step = [&] { return earliest(std::chrono::steady_clock::now() + s.command_timeout, attempt_deadline); };
    std::vector<std::string> commands{"MAIL FROM:<" + m.sender + ">"};
    for (auto i : rcpts) commands.push_back("RCPT TO:<" + m.recipients[i].address + ">");
    // PIPELINING (RFC 2920): MAIL and every RCPT in one write.
    auto replies = conn.offers("PIPELINING") ? conn.pipeline(commands, step()) : conn.sequence(commands, step());
    if (!replies) {
        problem = relay + ": " + replies.error();
        return Transaction::broken_before_mail;
    }
    const SmtpResponse& mail = (*replies)[0];
    if (!mail.positive()) {
        for (auto i : rcpts) out[i] = Outcome{mail.permanent() ? RecipientState::failed : RecipientState::pending,
                                              "MAIL FROM: " + mail.text(), relay};
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
            out[i] = Outcome{r.permanent() ? RecipientState::failed : RecipientState::pending, r.text(), relay};
        }
    }
    if (accepted.empty()) {
        auto reset = conn.command("RSET", step());
        return reset && reset->code == 250 ? Transaction::done_reusable : Transaction::done;
    }
    auto data = conn.data(m.content, earliest(std::chrono::steady_clock::now() + s.command_timeout * 2, attempt_deadline));
    for (auto i : accepted) {
        if (!data) {
            out[i] = Outcome{RecipientState::pending, data.error(), relay};
        } else {
            out[i] = Outcome{data->positive()    ? RecipientState::delivered
                             : data->permanent() ? RecipientState::failed
                                                 : RecipientState::pending,
                             data->text(), relay};
        }
    }
    return data ? Transaction::done_reusable : Transaction::done;
}

bool Deliverer::send_to(const DeliverySettings& s, const Route& route, const QueuedMessage& m,
                        const std::vector<std::size_t>& rcpts, std::vector<Outcome>& out, Deadline attempt_deadline) {
    std::string last_problem = route.problem.empty() ? "no host to try" : route.problem;
    for (const auto& hop : route.hops) {
        std::string relay = hop.name + "[" + hop.address + "]:" + std::to_string(hop.port);
        std::string key = relay + "/" + s.username + "/" + std::to_string(static_cast<int>(s.starttls));
        std::optional<SmtpConnection> conn;
        bool reused = false;
        auto now = std::chrono::steady_clock::now();
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
            std::string problem;
            auto result = transaction(s, *conn, m, rcpts, out, relay, attempt_deadline, problem);
            if (result == Transaction::broken_before_mail) {
                conn.reset();
                // A kept session the server has closed meanwhile: open a new one.
                if (reused) continue;
                last_problem = problem;
                break;
            }
            if (result == Transaction::done_reusable) cached = CachedSession{key, std::move(conn), std::chrono::steady_clock::now()};
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
    QueuedMessage& m = *read;
    std::vector<Outcome> out(m.recipients.size());
    // Recipients grouped by where they go.
    std::map<std::string, std::vector<std::size_t>> groups;
    for (std::size_t i = 0; i < m.recipients.size(); ++i) {
        if (m.recipients[i].state != RecipientState::pending) continue;
        groups[s.route == DeliveryRoute::smarthost ? "" : domain_of(m.recipients[i].address)].push_back(i);
    }
    Deadline attempt_deadline = std::chrono::steady_clock::now() + s.attempt_timeout;
    TimePoint next = now + retry_delay(now - m.arrival, s.retry_interval, s.max_retry_interval);
    for (const auto& [domain, rcpts] : groups) {
        Route route = s.route == DeliveryRoute::smarthost ? route_smarthosts(s) : route_mx(s, domain);
        if (route.hops.empty()) {
            for (auto i : rcpts) {
                out[i] = Outcome{route.permanent ? RecipientState::failed : RecipientState::pending, route.problem, ""};
            }
            continue;
        }
        if (auto resting = destinations_.resting_until(route.destination, now)) {
            for (auto i : rcpts) out[i] = Outcome{RecipientState::pending, route.destination + " is resting after failures", ""};
            next = std::min(next, std::max(*resting, now + std::chrono::seconds(1)));
            continue;
        }
        if (send_to(s, route, m, rcpts, out, attempt_deadline)) {
            destinations_.succeeded(route.destination);
        } else {
            TimePoint until = destinations_.failed(route.destination, now, s.retry_interval, s.max_retry_interval);
            spdlog::warn("destination {} unreachable ({}); resting until it is due again in {} s", route.destination,
                         out[rcpts.front()].reply,
                         std::chrono::duration_cast<std::chrono::seconds>(until - now).count());
        }
    }
    bool expired = now - m.arrival >= s.message_lifetime;
    std::size_t pending = 0;
    for (const auto& [domain, rcpts] : groups) {
        for (auto i : rcpts) {
            auto& o = out[i];
            auto& r = m.recipients[i];
            if (o.state == RecipientState::pending && expired) {
                o.state = RecipientState::failed;
                o.reply = "message lifetime expired; last problem: " + o.reply;
            }
            const char* status = o.state == RecipientState::delivered ? "sent"
                                 : o.state == RecipientState::failed  ? "bounced"
                                                                      : "deferred";
            spdlog::info("{}: to=<{}> relay={} status={} ({})", id, r.address, o.relay.empty() ? "none" : o.relay,
                         status, o.reply);
            if (o.state != RecipientState::pending) {
                if (!mark_recipient(path, r, o.state)) spdlog::error("{}: could not record the state of <{}>", id, r.address);
            } else {
                ++pending;
            }
        }
    }
    if (pending == 0) {
        ::unlink(path.c_str());
        sync_directory(queue_dir + "/active");
        spdlog::info("{}: removed (every recipient done)", id);
        return std::nullopt;
    }
    // The next attempt's time is the file's mtime: it survives a restart.
    timespec times[2] = {{0, UTIME_OMIT}, {next.time_since_epoch().count() / 1000, (next.time_since_epoch().count() % 1000) * 1'000'000}};
    ::utimensat(AT_FDCWD, path.c_str(), times, 0);
    return next;
}

}  // namespace relayguard
