// Authentication reports to the engine, and their log lines; see the header.
#include "plugin/frontends/auth_report_log.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <random>

#include "common/base/text_codec.h"
#include "common/daemon/logging.h"
#include "plugin/frontends/decision_log.h"
#include "plugin/ops/admin_server.h"

namespace relayguard {

namespace {

std::mutex counts_mutex;
std::map<AuthReportKey, std::uint64_t>& counts() {
    static std::map<AuthReportKey, std::uint64_t> c;
    return c;
}

void count(std::string_view via, const char* outcome) {
    std::lock_guard lock(counts_mutex);
    ++counts()[AuthReportKey{std::string(via), outcome}];
}

// A name for a failure reported without a password hash (an MTA's log), so
// that each counts as a guess of its own on every node and across reloads.
std::string unnamed_failure() {
    static const std::string node = [] {
        std::random_device rd;
        char text[24];
        std::snprintf(text, sizeof text, "%08x%08x", rd(), rd());
        return std::string(text);
    }();
    static std::atomic<std::uint64_t> sequence{0};
    return "unnamed:" + node + ":" + std::to_string(sequence.fetch_add(1, std::memory_order_relaxed));
}

}  // namespace

std::map<AuthReportKey, std::uint64_t> auth_report_counts() {
    std::lock_guard lock(counts_mutex);
    return counts();
}

void apply_auth_report(DecisionEngine& engine, const AuthReport& report, std::string_view via,
                       const AccountAlert& on_account_attack) {
    AuthReport named = report;
    if (!named.succeeded && named.password_id.empty()) named.password_id = unnamed_failure();
    auto out = engine.on_auth_report(named);
    std::string client = report.client.to_string();
    std::string via_text(via);
    count(via, report.succeeded ? "success" : "failure");
    if (report.succeeded) {
        if (out.pop_window_until) {
            log_pop_window(report.client, report.user, *out.pop_window_until, engine.now(), via_text.c_str());
        } else if (out.store_unreachable) {
            spdlog::error("pop-before-smtp: the window store cannot take the login of {} from {}",
                          log_quoted(report.user), client);
        }
        return;
    }
    SessionState s;
    engine.open_session(s, ConnectFacts{report.client, "", std::string(via)});
    security_log()->info("auth-failure client={} user={} protocol={} counted={} via={}", client,
                         log_quoted(report.user), log_quoted(report.protocol), out.counted ? "yes" : "no", via);
    if (out.groups_barred_until) {
        security_log()->info("auth-failure bars trusted group client={} group={} until={} via={}", client,
                             s.trusted_group, format_time(*out.groups_barred_until, "%Y-%m-%dT%H:%M:%SZ", TimeZone::utc),
                             via);
    }
    if (out.store_unreachable) {
        spdlog::warn("auth-events: the counter store cannot record the failed login from {}", client);
    }
    if (out.account_alert) {
        count(via, "account_attack");
        security_log()->warn("account-attack user={} networks={} last_client={} via={}", log_quoted(report.user),
                             *out.account_networks, client, via);
        if (on_account_attack) on_account_attack(report.user, *out.account_networks, report.client);
    }
    log_decision(s, out.decision, DecisionContext{via, "auth", {}, {}, {}});
}

}  // namespace relayguard
