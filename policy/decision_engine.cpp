// The decision engine's stage handlers. Each handler runs its rules in the
// order a refusal is cheapest to decide (no store call before a local check
// that can already refuse), and every refusal passes through finish() so
// that failed commands are counted in one place.
#include "policy/decision_engine.h"

#include <algorithm>
#include <cctype>

#include "policy/domain_set.h"
#include "policy/rules/refusal.h"

namespace relayguard {

std::string seconds_text(Duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + "s";
}

const char* to_string(Verdict v) {
    switch (v) {
        case Verdict::proceed: return "proceed";
        case Verdict::permit: return "permit";
        case Verdict::reject: return "reject";
        case Verdict::tempfail: return "tempfail";
        case Verdict::discard: return "discard";
        case Verdict::close: return "close";
        case Verdict::hold: return "hold";
    }
    return "?";
}

DecisionEngine::DecisionEngine(PolicySettings settings, CounterStore& counters, const Clock& clock,
                               PopWindowStore* pop_windows, DnsAnswers* dns, AccountStore* accounts,
                               AccountObserver* account_observer)
    : settings_(std::move(settings)),
      counters_(counters),
      clock_(clock),
      pop_windows_(pop_windows),
      accounts_(accounts),
      account_observer_(account_observer),
      relay_(settings_.relay, pop_windows),
      message_rate_(settings_.limits.message_rate, counters),
      connections_(settings_.limits.connections, counters),
      harvest_(settings_.limits.unknown_recipients, counters),
      auth_failures_(settings_.limits.auth_failures, counters),
      recipients_(settings_.limits.recipients),
      failed_commands_(settings_.limits.failed_commands),
      message_size_(settings_.limits.message_size),
      hops_(settings_.limits.hops),
      user_quota_(settings_.limits.user_quotas, counters, settings_.limits.compromised_accounts.quota_factor),
      dns_checks_(settings_.dns, dns) {}

std::string DecisionEngine::client_key(const IpAddress& client) const {
    int prefix = client.is_v4() ? settings_.limits.ipv4_prefix : settings_.limits.ipv6_prefix;
    if (prefix >= client.bit_count()) return client.to_string();
    return client.masked(prefix).to_string() + "/" + std::to_string(prefix);
}

void DecisionEngine::open_session(SessionState& s, const ConnectFacts& facts) const {
    s.client = facts.client;
    s.client_key = client_key(facts.client);
    s.client_name = facts.client_name;
    s.connection_id = facts.connection_id;
    s.exempt_from_limits = settings_.limits.exempt && settings_.limits.exempt->contains(facts.client);
    s.exempt_from_dns = find_group(settings_.dns.exempt_groups, facts.client) != nullptr;
    const IpGroup* trusted = find_group(settings_.relay.trusted_groups, facts.client);
    s.trusted_group = trusted ? trusted->name : "";
}

bool DecisionEngine::store_unreachable(Decision& out, const char* during) const {
    // "Full": a memory store holding only blocked and connected clients
    // makes no entry for a new one (memory_counter_store.h).
    std::string detail = std::string("counter store unreachable (or full) during ") + during;
    if (settings_.store_fail_mode == StoreFailMode::tempfail) {
        settle(out, refusal("store", settings_.store_failure_reply, detail + "; fail mode tempfail"), LimitMode::enforce);
        return true;
    }
    out.warnings.push_back(Decision{Verdict::proceed, {}, "store", detail + "; fail mode open", {}});
    return false;
}

std::optional<Decision> DecisionEngine::already_closing(const SessionState& s) const {
    const auto& fc = settings_.limits.failed_commands;
    if (!limits_apply(s) || !fc.max || fc.mode != LimitMode::enforce || s.failed_commands <= *fc.max) return std::nullopt;
    return refusal("failed_commands", fc.reply,
                   "failed=" + std::to_string(s.failed_commands) + " limit=" + std::to_string(*fc.max));
}

Decision DecisionEngine::finish(SessionState& s, Decision d) {
    if (!d.refused() || !limits_apply(s)) {
        if (d.refused()) ++s.failed_commands;  // still counted, for the log
        return d;
    }
    if (d.verdict == Verdict::close) {
        ++s.failed_commands;
        return d;
    }
    settle(d, failed_commands_.count_failure(s), failed_commands_.mode());
    return d;
}

Decision DecisionEngine::count_mta_failure(SessionState& s, Decision d) {
    // finish() counts refusals: present the MTA's as one, then hand back
    // what the engine itself decided.
    d.verdict = Verdict::reject;
    d = finish(s, std::move(d));
    if (d.verdict == Verdict::reject) d.verdict = Verdict::proceed;
    return d;
}

Decision DecisionEngine::on_connect(SessionState& s, const ConnectFacts& facts) {
    open_session(s, facts);
    dns_checks_.prepare(s);
    Decision d;
    if (!limits_apply(s)) return d;
    bool want_connections = settings_.limits.connections.max.has_value();
    if (!want_connections && !any_block_rule()) return d;
    TimePoint now = clock_.now();
    if (!want_connections && !harvest_.enabled()) {
        // Only the brute-force block to look for: no slot to take, and on
        // Redis the shared block list answers without a round trip.
        auto block = counters_.block(s.client_key, now);
        if (!block) store_unreachable(d, "connect");
        else if (*block) settle(d, block_refusal(**block, now), LimitMode::enforce);
        return finish(s, std::move(d));
    }
    std::optional<ClientBlock> block;
    auto r = connections_.open(s, now, block);
    if (r.store_unreachable()) {
        store_unreachable(d, "connect");
        return finish(s, std::move(d));
    }
    if (block && settle(d, block_refusal(*block, now), LimitMode::enforce)) return finish(s, std::move(d));
    settle(d, std::move(r), connections_.mode());
    return finish(s, std::move(d));
}

Decision DecisionEngine::block_refusal(const ClientBlock& block, TimePoint now) const {
    if (block.kind == GuessKind::failed_login) return auth_failures_.blocked(block.until, now);
    return harvest_.blocked(block.until, now);
}

Decision DecisionEngine::on_helo(SessionState& s, std::string_view) {
    if (auto c = already_closing(s)) return *c;
    return {};
}

void DecisionEngine::on_auth(SessionState& s, const AuthFacts& facts) {
    if (facts.succeeded) {
        s.auth = AuthState::succeeded;
        s.sasl_user = facts.user;
    } else if (s.auth != AuthState::succeeded) {
        s.auth = AuthState::failed;
    }
}

Decision DecisionEngine::on_mail(SessionState& s, const MailFacts& facts) {
    end_transaction(s);
    if (auto c = already_closing(s)) return *c;
    s.tx.open = true;
    s.tx.sender = facts.sender;
    ++s.transactions;
    if (!facts.sasl_user.empty()) on_auth(s, AuthFacts{true, facts.sasl_user, ""});
    // Another front end that saw this transaction counts the account too.
    s.tx.quota_counted_here = !facts.rate_checked_elsewhere;
    s.tx.counted_at_check = facts.count_at_check;

    Decision d;
    if (limits_apply(s) && facts.declared_size &&
        settle(d, message_size_.check(*facts.declared_size, "declared_size"), message_size_.mode())) {
        return finish(s, std::move(d));
    }
    // Authenticated users are known people, often on dial-up addresses
    // without reverse DNS: the PTR check is for anonymous clients.
    if (s.auth != AuthState::succeeded && settle(d, dns_checks_.check_client(s), LimitMode::enforce)) {
        return finish(s, std::move(d));
    }
    if (settle(d, dns_checks_.check_sender(s, facts.sender), LimitMode::enforce)) return finish(s, std::move(d));
    if (limits_apply(s) && message_rate_.enabled() && !facts.rate_checked_elsewhere) {
        s.tx.rate_checked = true;
        // Counting at the check too, a slot is reserved first: a later
        // refusal (the account's quota) gives it back, and count_now()
        // commits it once every rule has passed.
        auto r = message_rate_.check(s, clock_.now());
        if (r.store_unreachable()) {
            store_unreachable(d, "mail");
            return finish(s, std::move(d));
        }
        settle(d, std::move(r), message_rate_.mode());
        if (d.refused()) return finish(s, std::move(d));
    }
    // A message the account may not send takes no slot of the client's rate.
    if (!user_quota_passes(s, d, false)) message_rate_.release(s);
    else if (s.tx.counted_at_check) count_now(s);
    watch_account(s);
    return finish(s, std::move(d));
}

void DecisionEngine::count_now(SessionState& s) {
    TimePoint now = clock_.now();
    if (s.tx.rate_checked) message_rate_.commit(s, now);
    user_quota_.commit(s, now);
}

bool DecisionEngine::user_quota_passes(SessionState& s, Decision& out, bool at_rcpt) {
    if (!user_quota_.enabled() || s.auth != AuthState::succeeded || s.sasl_user.empty() || !s.tx.quota_counted_here) {
        return true;
    }
    TimePoint now = clock_.now();
    auto r = at_rcpt ? user_quota_.check_recipient(s, now) : user_quota_.check_message(s, now);
    if (r.store_unreachable()) return !store_unreachable(out, at_rcpt ? "rcpt (user quota)" : "mail (user quota)");
    return !settle(out, std::move(r), user_quota_.mode());
}

Decision DecisionEngine::on_rcpt(SessionState& s, const RcptFacts& facts) {
    if (auto c = already_closing(s)) return *c;
    TimePoint now = clock_.now();
    Decision d;
    if (facts.rejected_by_mta) {
        // The MTA already refused it: we only count, and may block or close.
        d.rule = "mta";
        d.detail = "recipient refused by the MTA with " + facts.mta_status;
        if (limits_apply(s) && harvest_.enabled() && HarvestGuard::means_unknown_user(facts.mta_status, facts.mta_text)) {
            auto r = harvest_.record(s, facts.recipient, now);
            if (r.store_unreachable()) {
                store_unreachable(d, "rcpt");
            } else {
                settle(d, std::move(r), harvest_.mode());
            }
        }
        if (!d.refused()) return count_mta_failure(s, std::move(d));
        return finish(s, std::move(d));
    }

    bool blocks_enforced = (harvest_.enabled() && harvest_.mode() == LimitMode::enforce) ||
                           (auth_failures_.enabled() && auth_failures_.mode() == LimitMode::enforce);
    if (limits_apply(s) && blocks_enforced) {
        auto block = counters_.block(s.client_key, now);
        if (!block) {
            if (store_unreachable(d, "rcpt")) return finish(s, std::move(d));
        } else if (*block) {
            settle(d, block_refusal(**block, now), LimitMode::enforce);
            return finish(s, std::move(d));
        }
    }

    if (!note_reported_auth_failure(s, facts.recipient, d)) return finish(s, std::move(d));
    auto relay = relay_.check(s, facts.recipient, now);
    if (!relay) {
        if (store_unreachable(d, "rcpt (pop-before-smtp window)")) return finish(s, std::move(d));
        relay = refusal("relay", settings_.relay.reply, "pop-before-smtp store unreachable; client may not relay");
    }
    if (settle(d, std::move(*relay), LimitMode::enforce)) return finish(s, std::move(d));

    if (limits_apply(s)) {
        Decision limit = d;
        if (settle(limit, recipients_.check(s.tx), recipients_.mode())) return finish(s, std::move(limit));
        d.warnings = std::move(limit.warnings);
    }
    Decision quota = d;
    bool quota_ok = user_quota_passes(s, quota, true);
    if (quota_ok && s.tx.counted_at_check) user_quota_.commit(s, now);
    watch_account(s);
    if (!quota_ok) return finish(s, std::move(quota));
    d.warnings = std::move(quota.warnings);
    ++s.tx.recipients;
    // A recipient that relays keeps its permit: the policy protocol has one
    // action per answer, and a HOLD there would leave relaying to the
    // restrictions after it (reject_unauth_destination). The message is
    // held at end of data instead, by either front end.
    if (s.tx.hold_reason.empty() || d.verdict == Verdict::permit) return d;
    return held(s, std::move(d));
}

Decision DecisionEngine::on_header(SessionState& s, std::string_view name, std::string_view) {
    if (auto c = already_closing(s)) return *c;
    Decision d;
    auto equals_ci = [](std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
        }
        return true;
    };
    if (!equals_ci(name, "received")) return d;
    ++s.tx.received_headers;
    // Refuse once per message, when the count first goes past the limit.
    if (!limits_apply(s) || s.tx.refused) return d;
    if (settle(d, hops_.check(s.tx.received_headers), hops_.mode())) {
        s.tx.refused = true;
        return finish(s, std::move(d));
    }
    return d;
}

Decision DecisionEngine::on_body(SessionState& s, std::uint64_t bytes) {
    s.tx.body_bytes += bytes;
    Decision d;
    if (!limits_apply(s) || s.tx.refused) return d;
    if (settle(d, message_size_.check(s.tx.body_bytes, "body_bytes"), message_size_.mode())) {
        s.tx.refused = true;
        return finish(s, std::move(d));
    }
    return d;
}

Decision DecisionEngine::on_eom(SessionState& s, const EomFacts& facts) {
    if (auto c = already_closing(s)) {
        end_transaction(s);
        return *c;
    }
    Decision d = eom_limits(s, facts);
    bool accepted = !d.refused() && !s.tx.refused;
    TimePoint now = clock_.now();
    if (accepted && !facts.counted_elsewhere && limits_apply(s) && message_rate_.enabled()) {
        message_rate_.commit(s, now);
    }
    // Only the front end that counts the account holds quota slots
    // (quota_counted_here), so they are committed even when another front
    // end told Postfix's end of data first and counted the client's rate.
    if (accepted) user_quota_.commit(s, now);
    if (!d.refused() && !s.tx.refused && !s.tx.hold_reason.empty()) d = held(s, std::move(d));
    end_transaction(s);  // gives back whatever was not committed
    return d.refused() ? finish(s, std::move(d)) : d;
}

Decision DecisionEngine::eom_limits(const SessionState& s, const EomFacts& facts) const {
    Decision d;
    if (!limits_apply(s) || s.tx.refused) return d;
    std::uint64_t size = facts.size.value_or(s.tx.body_bytes);
    if (settle(d, message_size_.check(size, "size"), message_size_.mode())) return d;
    std::uint32_t rcpts = std::max(facts.recipients, s.tx.recipients);
    Transaction counted;
    counted.recipients = rcpts > 0 ? rcpts - 1 : 0;
    settle(d, recipients_.check(counted), recipients_.mode());
    return d;
}

void DecisionEngine::end_transaction(SessionState& s) {
    message_rate_.release(s);
    user_quota_.release(s);
    s.tx = Transaction{};
}

void DecisionEngine::on_abort(SessionState& s) { end_transaction(s); }

Decision DecisionEngine::on_unknown_command(SessionState& s) {
    if (auto c = already_closing(s)) return *c;
    return count_mta_failure(s, Decision{Verdict::proceed, {}, "mta", "unknown command", {}});
}

void DecisionEngine::on_close(SessionState& s) {
    end_transaction(s);
    connections_.close(s);
}

bool DecisionEngine::note_reported_auth_failure(SessionState& s, std::string_view recipient, Decision& out) {
    const RelaySettings& relay = settings_.relay;
    // Only a trusted-group client about to relay has anything to lose.
    if (s.auth_failure_checked || s.auth != AuthState::none || s.trusted_group.empty()) return true;
    if (!relay.auth_failure_disables_groups || !relay.allow_sasl || relay.mode == RelayMode::open) return true;
    if (!settings_.limits.auth_failures.reported || relay_.is_local(recipient)) return true;
    auto failed = counters_.failed_auth_until(s.client.to_string(), clock_.now());
    if (!failed) return !store_unreachable(out, "rcpt (failed AUTH reports)");
    s.auth_failure_checked = true;
    if (*failed) s.auth = AuthState::failed;
    return true;
}

DecisionEngine::AuthReportOutcome DecisionEngine::on_auth_report(const AuthReport& report) {
    AuthReportOutcome out;
    SessionState s;
    open_session(s, ConnectFacts{report.client, "", "auth-report"});
    TimePoint now = clock_.now();
    if (report.succeeded) {
        if (accounts_watched() && !report.user.empty()) record_login(s, DomainSet::normalise(report.user), now);
        bool mailbox_login = report.protocol == "pop3" || report.protocol == "imap";
        if (mailbox_login && settings_.relay.allow_pop_before_smtp) {
            out.pop_window_until = open_pop_window(report.client, report.user, std::nullopt);
            out.store_unreachable = !out.pop_window_until;
        }
        return out;
    }
    const RelaySettings& relay = settings_.relay;
    // Kerio's rule is about SMTP AUTH: a mistyped IMAP password behind an
    // office's NAT must not stop the office relaying. A log source reports
    // SMTP AUTH only.
    bool smtp_auth = report.protocol == "smtp";
    if (smtp_auth && !s.trusted_group.empty() && relay.auth_failure_disables_groups && relay.allow_sasl) {
        TimePoint until = now + relay.auth_failure_window;
        if (counters_.mark_failed_auth(s.client.to_string(), until, now)) out.groups_barred_until = until;
        else out.store_unreachable = true;
    }
    record_auth_failure(s, report, now, out);
    return out;
}

void DecisionEngine::record_auth_failure(const SessionState& s, const AuthReport& report, TimePoint now,
                                         AuthReportOutcome& out) {
    // Trusted and exempt clients are never blocked for failed logins: the
    // trusted ones lose their groups instead (above).
    if (!auth_failures_.enabled() || !limits_apply(s) || !s.trusted_group.empty()) return;
    // One guess is one user and password; without a hash of the password
    // every failure is a guess of its own.
    std::string guess = report.password_id.empty()
                            ? "#" + std::to_string(unnamed_failures_.fetch_add(1, std::memory_order_relaxed))
                            : report.password_id;
    guess = DomainSet::normalise(report.user) + '\0' + guess;
    auto r = auth_failures_.record(s, guess, now);
    if (r.store_unreachable()) {
        out.store_unreachable = true;
    } else {
        out.counted = true;
        settle(out.decision, std::move(r), auth_failures_.mode());
    }
    if (auto account = auth_failures_.record_account(s, report.user, now)) {
        out.account_networks = account->networks;
        // Once, when the network that reaches the threshold is added.
        out.account_alert = account->new_network && account->networks == *auth_failures_.account_threshold();
    }
}

std::string DecisionEngine::login_network(const IpAddress& client) const {
    const auto& c = settings_.limits.compromised_accounts;
    int prefix = client.is_v4() ? c.ipv4_prefix : c.ipv6_prefix;
    if (prefix >= client.bit_count()) return client.to_string();
    return client.masked(prefix).to_string() + "/" + std::to_string(prefix);
}

void DecisionEngine::mark_compromised(SessionState& s, const std::string& user, const std::string& reason,
                                      TimePoint now) {
    auto marked = accounts_->mark_compromised(user, reason, now);
    if (marked) s.tx.mark_checked = false;  // the message at hand is held too
    const IpAddress& client = s.client;
    // Told once, by the node that set the mark; a store that failed marks nothing.
    if (marked && *marked && account_observer_ != nullptr) account_observer_->account_compromised(user, reason, client);
}

void DecisionEngine::record_login(SessionState& s, const std::string& user, TimePoint now) {
    const auto& c = settings_.limits.compromised_accounts;
    if (!c.max_networks) return;
    auto r = accounts_->record_login(user, login_network(s.client), c.window, *c.max_networks + 1, now);
    // Every login past the limit asks to mark: after an admin cleared the
    // mark, the networks start afresh, so this marks again only on new ones.
    if (!r || r->networks <= *c.max_networks) return;
    mark_compromised(s, user,
                     "logged in from " + std::to_string(r->networks) + " networks within " + seconds_text(c.window) +
                         " (limit " + std::to_string(*c.max_networks) + ")",
                     now);
}

void DecisionEngine::watch_account(SessionState& s) {
    if (!accounts_watched() || s.auth != AuthState::succeeded || s.sasl_user.empty() || !s.tx.open) return;
    std::string user = DomainSet::normalise(s.sasl_user);
    TimePoint now = clock_.now();
    if (!s.tx.quota_overrun.empty()) {
        mark_compromised(s, user,
                         "tried " + std::to_string(*settings_.limits.compromised_accounts.quota_factor) +
                             " times its quota " + s.tx.quota_overrun,
                         now);
        s.tx.quota_overrun.clear();
    }
    if (!s.login_recorded) {
        s.login_recorded = true;
        record_login(s, user, now);
    }
    // Asked once a transaction (and again only after this one marked it).
    if (s.tx.mark_checked) return;
    s.tx.mark_checked = true;
    // A store that cannot say lets the mail flow: holding is on top of the
    // limits, which still apply.
    auto mark = accounts_->compromised(user, false);
    if (mark && *mark) s.tx.hold_reason = "account marked compromised: " + (*mark)->reason;
}

Decision DecisionEngine::held(const SessionState& s, Decision d) const {
    Decision out{Verdict::hold, {}, "compromised_account", "user=" + s.sasl_user + "; " + s.tx.hold_reason, {}};
    out.reply.text = "held: account marked compromised";
    out.warnings = std::move(d.warnings);
    return out;
}

bool DecisionEngine::note_held(const SessionState& s, const std::string& queue_id) {
    if (accounts_ == nullptr || s.sasl_user.empty()) return false;
    // A Postfix or Sendmail queue id is letters and digits; anything else
    // (a forged "ALL" or "-") would make the admin's postsuper -H release
    // more than this account's mail.
    bool plain = !queue_id.empty() && queue_id.size() <= 64 && queue_id != "ALL" &&
                 std::all_of(queue_id.begin(), queue_id.end(), [](unsigned char c) { return std::isalnum(c) != 0; });
    if (!plain) return false;
    return accounts_->add_held(DomainSet::normalise(s.sasl_user), queue_id, clock_.now());
}

std::optional<DecisionEngine::AccountReport> DecisionEngine::inspect_account(const std::string& name) {
    AccountReport r;
    r.user = DomainSet::normalise(name);
    r.quota = user_quota_.quota_for(r.user);
    TimePoint now = clock_.now();
    auto used = [&](const char* quota, Duration window) -> std::optional<std::uint32_t> {
        auto c = counters_.inspect(UserQuotaLimit::key(quota, r.user), CounterWindows{window, window, window}, now);
        if (!c) return std::nullopt;
        return c->messages + c->messages_in_flight;
    };
    auto hour = used("messages_per_hour", std::chrono::hours(1));
    auto day = used("messages_per_day", std::chrono::hours(24));
    auto rcpts = used("recipients_per_day", std::chrono::hours(24));
    if (!hour || !day || !rcpts) return std::nullopt;
    r.used = UserQuota{hour, day, rcpts};
    if (accounts_ != nullptr) {
        auto networks = accounts_->login_networks(r.user, settings_.limits.compromised_accounts.window, now);
        auto mark = accounts_->compromised(r.user, true);
        if (!networks || !mark) return std::nullopt;
        r.login_networks = std::move(*networks);
        r.mark = std::move(*mark);
    }
    return r;
}

Lookup<CompromisedMark> DecisionEngine::clear_account(const std::string& user) {
    if (accounts_ == nullptr) return std::optional<CompromisedMark>{};
    std::string name = DomainSet::normalise(user);
    // The tries past a quota start afresh too, or the next refusal would
    // mark the account again at once.
    for (const char* quota : {"over/messages_per_hour", "over/messages_per_day", "over/recipients_per_day"}) {
        counters_.forget_messages(UserQuotaLimit::key(quota, name));
    }
    return accounts_->clear_compromised(name);
}

Decision DecisionEngine::on_auth_attempt(const IpAddress& client) {
    SessionState s;
    open_session(s, ConnectFacts{client, "", "auth-attempt"});
    if (!auth_failures_.enabled() || !limits_apply(s) || !s.trusted_group.empty()) return {};
    TimePoint now = clock_.now();
    auto block = counters_.block(s.client_key, now);
    if (!block || !*block || (*block)->kind != GuessKind::failed_login) return {};
    return auth_failures_.blocked((*block)->until, now);
}

std::optional<TimePoint> DecisionEngine::open_pop_window(const IpAddress& client, const std::string& user,
                                                         std::optional<Duration> length) {
    if (pop_windows_ == nullptr) return std::nullopt;
    TimePoint now = clock_.now();
    TimePoint until = now + length.value_or(settings_.relay.pop_window);
    if (!pop_windows_->grant(relay_.pop_key(client), user, until, now)) return std::nullopt;
    return until;
}

Lookup<PopWindow> DecisionEngine::pop_window(const IpAddress& client) {
    if (pop_windows_ == nullptr) return std::optional<PopWindow>{};
    return pop_windows_->find(relay_.pop_key(client), clock_.now());
}

std::optional<DecisionEngine::ClientReport> DecisionEngine::inspect(const IpAddress& client) {
    TimePoint now = clock_.now();
    SessionState s;
    open_session(s, ConnectFacts{client, "", "admin"});
    auto counters = counters_.inspect(s.client_key,
                                      CounterWindows{settings_.limits.message_rate.window,
                                                     settings_.limits.unknown_recipients.window,
                                                     settings_.limits.auth_failures.window},
                                      now);
    if (!counters) return std::nullopt;
    ClientReport r{s.client_key, *counters, std::nullopt, std::nullopt, s.exempt_from_limits, s.trusted_group};
    if (auto barred = counters_.failed_auth_until(client.to_string(), now); barred && *barred) {
        r.groups_barred_until = **barred;
    }
    if (pop_windows_ != nullptr) {
        auto w = pop_windows_->find(relay_.pop_key(client), now);
        if (w && *w) r.pop_window = **w;
    }
    return r;
}

bool DecisionEngine::unblock(const IpAddress& client) { return counters_.unblock(client_key(client)); }

bool DecisionEngine::reset(const IpAddress& client) {
    bool was_blocked = counters_.unblock(client_key(client));
    counters_.forget_messages(client_key(client));
    return was_blocked;
}

}  // namespace relayguard
