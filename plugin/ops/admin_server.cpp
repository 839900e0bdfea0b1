// The admin socket; see the header.
#include "plugin/ops/admin_server.h"

#include <nlohmann/json.hpp>

#include <sstream>

#include "common/base/system_clock.h"
#include "common/base/text_codec.h"
#include "common/base/version.h"
#include "common/daemon/logging.h"
#include "common/base/units.h"
#include "plugin/frontends/decision_log.h"

namespace relayguard {

namespace {

std::vector<std::string> words_of(std::string_view line) {
    std::vector<std::string> out;
    std::istringstream in{std::string(line)};
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

// A user name for a log line: no space, control character, quote or backslash that
// could end the user="..." field early.
bool printable(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x21 || c == 0x7f || c == '"' || c == '\\') return false;
    }
    return true;
}

std::string iso_time(TimePoint t) { return format_time(t, "%Y-%m-%dT%H:%M:%SZ", TimeZone::utc); }

// Every reply is one line of JSON: {"ok": true, ..., "text": "for people"}
// or {"ok": false, "error": "why"}. relayguardctl prints "text", or the
// whole object with --json.
std::string success(nlohmann::json j) {
    j["ok"] = true;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string failure(const std::string& why) {
    return nlohmann::json{{"ok", false}, {"error", why}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void log_pop_window(const IpAddress& client, const std::string& user, TimePoint until, TimePoint now, const char* via) {
    security_log()->info("pop-before-smtp window client={} user={} until={} for={}s via={}", client.to_string(),
                         log_quoted(user), iso_time(until),
                         std::chrono::duration_cast<std::chrono::seconds>(until - now).count(), via);
}

AdminServer::AdminServer(EngineHolder& engine, Hooks hooks)
    : engine_(engine),
      hooks_(std::move(hooks)),
      socket_([this](std::string_view request) { return handle(request); },
              failure("no request line within 2 s, or one over 1024 bytes")) {}

void AdminServer::start(UniqueFd listener) { socket_.start(std::move(listener)); }

void AdminServer::stop() { socket_.stop(); }

std::string AdminServer::handle(std::string_view request) {
    if (!request.empty() && request.back() == '\r') request.remove_suffix(1);
    auto words = words_of(request);
    if (words.empty()) return failure("empty request");
    if (words[0] == "ping" && words.size() == 1) return success({{"text", "relayguard is running"}});
    if (words[0] == "status" && words.size() == 1) return status();
    if (words[0] == "ip") return ip_command(words);
    if (words[0] == "pop") return pop_command(words);
    if (words[0] == "user") return user_command(words);
    if (words[0] == "reload" && words.size() == 1) {
        auto reloaded = hooks_.reload ? hooks_.reload() : Result<ReloadOutcome>::failure("reload is not available");
        if (!reloaded) return failure(reloaded.error());
        return success({{"text", reloaded->text()},
                        {"applied", reloaded->applied},
                        {"needs_restart", reloaded->needs_restart}});
    }
    return failure("unknown command '" + words[0] + "'; commands: ping, status, ip show, ip unblock, ip reset, pop grant, "
                   "pop show, pop list, user show, user release, user clear, reload");
}

std::string AdminServer::status() {
    auto engine = engine_.current();
    auto up = std::chrono::duration_cast<std::chrono::seconds>(SystemClock::monotonic() - started_).count();
    nlohmann::json j{{"version", relayguard_version()}, {"uptime_seconds", up}};
    if (hooks_.store) j["store"] = hooks_.store();
    nlohmann::json decisions = nlohmann::json::array();
    std::string table;
    for (const auto& [k, n] : decision_counts()) {
        decisions.push_back({{"stage", k.stage}, {"rule", k.rule}, {"verdict", k.verdict}, {"count", n}});
        table += "  " + k.stage + " " + k.rule + " " + k.verdict + ": " + std::to_string(n) + "\n";
    }
    j["decisions"] = decisions;
    std::string store_text = j.contains("store") ? j["store"].value("text", "") : "";
    j["text"] = "relayguard " + std::string(relayguard_version()) + ", up " + std::to_string(up) + " s\nstore: " + store_text +
                "\ndecisions since start (stage rule verdict: count):\n" + (table.empty() ? "  none yet\n" : table);
    return success(std::move(j));
}

std::string AdminServer::ip_command(const std::vector<std::string>& words) {
    if (words.size() != 3 || (words[1] != "show" && words[1] != "unblock" && words[1] != "reset")) {
        return failure("usage: ip show ADDR | ip unblock ADDR | ip reset ADDR");
    }
    auto client = IpAddress::parse(words[2]);
    if (!client) return failure("'" + words[2] + "' is not an IP address");
    auto engine = engine_.current();
    if (words[1] == "reset") {
        bool was = engine->reset(*client);
        // Read back: a store that could not be reached reset nothing.
        auto after = engine->inspect(*client);
        if (!after) return failure("the counter store cannot be reached; nothing was reset");
        if (after->counters.blocked_until || after->counters.messages > 0) {
            return failure("the store still holds counts for " + client->to_string() + " (a message ended meanwhile?); "
                           "run ip reset again");
        }
        security_log()->info("reset client={} by=admin was_blocked={}", client->to_string(), was ? "yes" : "no");
        return success({{"client", client->to_string()}, {"was_blocked", was},
                        {"text", std::string(was ? "block lifted; " : "") + "messages, unknown recipients and failed "
                                 "logins of " + client->to_string() + " forgotten: its counts start again from 0"}});
    }
    if (words[1] == "unblock") {
        bool was = engine->unblock(*client);
        security_log()->info("unblocked client={} by=admin was_blocked={}", client->to_string(), was ? "yes" : "no");
        return success({{"client", client->to_string()}, {"was_blocked", was},
                        {"text", was ? "block lifted for " + client->to_string()
                                     : "no block for " + client->to_string() +
                                           "; its unknown recipients and failed logins forgotten"}});
    }
    auto r = engine->inspect(*client);
    if (!r) return failure("the counter store cannot be reached");
    const auto& l = engine->settings().limits;
    TimePoint now = engine->now();
    auto secs = [](Duration d) { return std::chrono::duration_cast<std::chrono::seconds>(d).count(); };
    auto limit = [](const std::optional<std::uint32_t>& m) { return m ? nlohmann::json(*m) : nlohmann::json(nullptr); };
    auto of = [](const std::optional<std::uint32_t>& m) { return m ? " of " + std::to_string(*m) : std::string(" (no limit)"); };
    // When the count next drops: its oldest entry a window old.
    auto leaves = [&](const std::optional<TimePoint>& oldest, Duration window) {
        return oldest ? nlohmann::json(std::max<long long>(0, secs(*oldest + window - now))) : nlohmann::json(nullptr);
    };
    auto leaves_text = [&](const std::optional<TimePoint>& oldest, Duration window) {
        if (!oldest) return std::string();
        return ", the oldest leaves the window in " + std::to_string(std::max<long long>(0, secs(*oldest + window - now))) +
               " s";
    };
    nlohmann::json j{{"client", client->to_string()},
                     {"key", r->key},
                     {"exempt_from_limits", r->exempt_from_limits},
                     {"trusted_group", r->trusted_group},
                     {"messages", {{"count", r->counters.messages}, {"in_flight", r->counters.messages_in_flight},
                                   {"limit", limit(l.message_rate.max)},
                                   {"window_seconds", secs(l.message_rate.window)},
                                   {"oldest_leaves_in_seconds", leaves(r->counters.oldest_message, l.message_rate.window)}}},
                     {"connections", {{"count", r->counters.connections}, {"limit", limit(l.connections.max)}}},
                     {"unknown_recipients", {{"count", r->counters.unknown_recipients},
                                             {"limit", limit(l.unknown_recipients.max)},
                                             {"window_seconds", secs(l.unknown_recipients.window)},
                                             {"oldest_leaves_in_seconds",
                                              leaves(r->counters.oldest_unknown_recipient, l.unknown_recipients.window)}}},
                     {"failed_logins", {{"count", r->counters.failed_logins},
                                        {"limit", limit(l.auth_failures.max)},
                                        {"window_seconds", secs(l.auth_failures.window)},
                                        {"oldest_leaves_in_seconds",
                                         leaves(r->counters.oldest_failed_login, l.auth_failures.window)}}}};
    std::string text = "client " + client->to_string() + (r->key != client->to_string() ? " (counted as " + r->key + ")" : "") +
                       (r->exempt_from_limits ? ", exempt from limits" : "") +
                       (r->trusted_group.empty() ? "" : ", trusted group " + r->trusted_group) + "\n" +
                       "  messages:           " + std::to_string(r->counters.messages) + of(l.message_rate.max) +
                       " in " + std::to_string(secs(l.message_rate.window)) + " s" +
                       leaves_text(r->counters.oldest_message, l.message_rate.window) +
                       (r->counters.messages_in_flight > 0
                            ? ", " + std::to_string(r->counters.messages_in_flight) + " more in flight"
                            : std::string()) +
                       "\n" +
                       "  connections:        " + std::to_string(r->counters.connections) + of(l.connections.max) + "\n" +
                       "  unknown recipients: " + std::to_string(r->counters.unknown_recipients) +
                       of(l.unknown_recipients.max) + " in " + std::to_string(secs(l.unknown_recipients.window)) + " s" +
                       leaves_text(r->counters.oldest_unknown_recipient, l.unknown_recipients.window) + "\n" +
                       "  failed logins:      " + std::to_string(r->counters.failed_logins) +
                       of(l.auth_failures.max) + " in " + std::to_string(secs(l.auth_failures.window)) + " s" +
                       leaves_text(r->counters.oldest_failed_login, l.auth_failures.window) + "\n";
    if (r->counters.blocked_until) {
        bool logins = r->counters.blocked_for == GuessKind::failed_login;
        j["blocked"] = {{"until", iso_time(*r->counters.blocked_until)},
                        {"seconds_left", secs(*r->counters.blocked_until - now)},
                        {"rule", block_rule(r->counters.blocked_for)}};
        text += std::string("  blocked (") + (logins ? "failed logins" : "directory harvest") + ") until " +
                iso_time(*r->counters.blocked_until) + ", " + std::to_string(secs(*r->counters.blocked_until - now)) +
                " s left\n";
    } else {
        j["blocked"] = nullptr;
        text += "  not blocked\n";
    }
    if (r->groups_barred_until) {
        j["groups_barred_until"] = iso_time(*r->groups_barred_until);
        text += "  trusted groups barred after a failed AUTH until " + iso_time(*r->groups_barred_until) + ", " +
                std::to_string(secs(*r->groups_barred_until - now)) + " s left\n";
    } else {
        j["groups_barred_until"] = nullptr;
    }
    if (r->pop_window) {
        j["pop_window"] = {{"user", r->pop_window->user}, {"until", iso_time(r->pop_window->until)},
                           {"seconds_left", secs(r->pop_window->until - now)}};
        text += "  pop-before-smtp window until " + iso_time(r->pop_window->until) + " (user \"" + r->pop_window->user +
                "\", " + std::to_string(secs(r->pop_window->until - now)) + " s left)\n";
    } else {
        j["pop_window"] = nullptr;
    }
    j["text"] = text;
    return success(std::move(j));
}

std::string AdminServer::user_command(const std::vector<std::string>& words) {
    if (words.size() != 3 || (words[1] != "show" && words[1] != "release" && words[1] != "clear")) {
        return failure("usage: user show USER | user release USER | user clear USER");
    }
    const std::string& user = words[2];
    if (!printable(user) || user.size() > 256) return failure("not a user name");
    auto engine = engine_.current();
    if (words[1] == "show") return user_report(*engine, user);
    auto mark = engine->clear_account(user);
    if (!mark) return failure("the account store cannot be reached");
    bool release = words[1] == "release";
    nlohmann::json held = nlohmann::json::array();
    if (*mark) for (const auto& id : (*mark)->held) held.push_back(id);
    security_log()->info("account mark lifted user={} by=admin was_marked={} held={} {}", log_quoted(user),
                         *mark ? "yes" : "no", held.size(), release ? "to be released" : "left held");
    std::string text = !*mark ? "no mark on " + user
                              : "mark lifted from " + user + "; " + std::to_string(held.size()) + " message(s) " +
                                    (release ? "to release" : "left in the hold queue (postsuper -H releases them)");
    return success({{"user", user}, {"was_marked", mark->has_value()}, {"held", held}, {"release", release},
                    {"text", text}});
}

std::string AdminServer::user_report(DecisionEngine& engine, const std::string& user) {
    auto r = engine.inspect_account(user);
    if (!r) return failure("the store cannot be reached");
    auto limit = [](const std::optional<std::uint32_t>& m) { return m ? nlohmann::json(*m) : nlohmann::json(nullptr); };
    auto of = [](const std::optional<std::uint32_t>& used, const std::optional<std::uint32_t>& max) {
        return std::to_string(used.value_or(0)) + (max ? " of " + std::to_string(*max) : std::string(" (no quota)"));
    };
    nlohmann::json j{{"user", r->user},
                     {"messages_per_hour", {{"used", *r->used.messages_per_hour}, {"quota", limit(r->quota.messages_per_hour)}}},
                     {"messages_per_day", {{"used", *r->used.messages_per_day}, {"quota", limit(r->quota.messages_per_day)}}},
                     {"recipients_per_day",
                      {{"used", *r->used.recipients_per_day}, {"quota", limit(r->quota.recipients_per_day)}}}};
    std::string text = "account " + r->user + "\n" +
                       "  messages in the last hour: " + of(r->used.messages_per_hour, r->quota.messages_per_hour) + "\n" +
                       "  messages in the last day:  " + of(r->used.messages_per_day, r->quota.messages_per_day) + "\n" +
                       "  recipients in the last day: " + of(r->used.recipients_per_day, r->quota.recipients_per_day) +
                       "\n";
    nlohmann::json networks = nlohmann::json::array();
    text += "  logged in from " + std::to_string(r->login_networks.size()) + " network(s) lately";
    for (const auto& [network, last] : r->login_networks) {
        networks.push_back({{"network", network}, {"last_login", iso_time(last)}});
        text += "\n    " + network + " (last " + iso_time(last) + ")";
    }
    text += "\n";
    j["login_networks"] = networks;
    if (r->mark) {
        nlohmann::json held = nlohmann::json::array();
        for (const auto& id : r->mark->held) held.push_back(id);
        j["compromised"] = {{"since", iso_time(r->mark->since)}, {"reason", r->mark->reason}, {"held", held}};
        text += "  COMPROMISED since " + iso_time(r->mark->since) + ": " + r->mark->reason + "\n  " +
                std::to_string(r->mark->held.size()) + " message(s) held";
        for (const auto& id : r->mark->held) text += " " + id;
        text += "\n";
    } else {
        j["compromised"] = nullptr;
        text += "  not marked compromised\n";
    }
    j["text"] = text;
    return success(std::move(j));
}

std::string AdminServer::pop_command(const std::vector<std::string>& words) {
    if (words.size() == 2 && words[1] == "list") {
        if (!hooks_.pop_list) return failure("pop list is not available");
        auto windows = hooks_.pop_list();
        if (!windows) return failure(windows.error());
        TimePoint now = engine_.current()->now();
        nlohmann::json list = nlohmann::json::array();
        std::string text;
        for (const auto& [client, w] : *windows) {
            auto left = std::chrono::duration_cast<std::chrono::seconds>(w.until - now).count();
            list.push_back({{"client", client}, {"user", w.user}, {"until", iso_time(w.until)}, {"seconds_left", left}});
            text += client + " user=\"" + w.user + "\" until " + iso_time(w.until) + " (" + std::to_string(left) + " s left)\n";
        }
        return success({{"windows", list}, {"text", text.empty() ? "no open windows\n" : text}});
    }
    if (words.size() < 3 || (words[1] != "grant" && words[1] != "show")) {
        return failure("usage: pop grant ADDR [user=NAME] [for=DURATION] | pop show ADDR | pop list");
    }
    auto client = IpAddress::parse(words[2]);
    if (!client) return failure("'" + words[2] + "' is not an IP address");
    auto engine = engine_.current();
    if (!engine->settings().relay.allow_pop_before_smtp) {
        return failure("relay.allow_pop_before_smtp is false: a window would open nothing");
    }
    TimePoint now = engine->now();
    if (words[1] == "show") {
        auto window = engine->pop_window(*client);
        if (!window) return failure("the window store cannot be reached");
        if (!*window) return success({{"client", client->to_string()}, {"window", nullptr},
                                      {"text", "no window for " + client->to_string()}});
        return success({{"client", client->to_string()},
                        {"window", {{"user", (*window)->user}, {"until", iso_time((*window)->until)}}},
                        {"text", "window for " + client->to_string() + " until " + iso_time((*window)->until) +
                                     " user=\"" + (*window)->user + "\""}});
    }
    std::string user;
    std::optional<Duration> length;
    for (std::size_t i = 3; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w.rfind("user=", 0) == 0 && printable(w.substr(5)) && w.size() <= 5 + 256) {
            user = w.substr(5);
        } else if (w.rfind("for=", 0) == 0) {
            auto d = parse_duration(w.substr(4));
            if (!d || *d <= Duration::zero()) return failure("for=" + w.substr(4) + " is not a duration such as 30m");
            length = *d;
        } else {
            return failure("unexpected '" + w + "'");
        }
    }
    auto until = engine->open_pop_window(*client, user, length);
    if (!until) return failure("the window store cannot be reached");
    log_pop_window(*client, user, *until, now, "admin");
    return success({{"client", client->to_string()}, {"until", iso_time(*until)},
                    {"text", "window for " + client->to_string() + " until " + iso_time(*until)}});
}

}  // namespace relayguard
