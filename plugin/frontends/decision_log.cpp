// Decision logging; see the header. Values that come from the client are
// quoted and stripped of control characters, so a hostile address cannot
// forge a second log line.
#include "plugin/frontends/decision_log.h"

#include <mutex>

#include "common/base/system_clock.h"
#include "common/daemon/logging.h"

namespace relayguard {
namespace {

RefusalObserver& observer() {
    static RefusalObserver o;
    return o;
}

std::mutex counts_mutex;
std::map<DecisionKey, std::uint64_t>& counts() {
    static std::map<DecisionKey, std::uint64_t> c;
    return c;
}

std::map<std::string, LatencyHistogram>& latency() {
    // Every stage a front end reports, made at once so lookups need no lock.
    static std::map<std::string, LatencyHistogram> l = [] {
        std::map<std::string, LatencyHistogram> m;
        for (const char* stage : {"connect", "helo", "mail", "rcpt", "header", "body", "eom", "unknown"}) m[stage];
        return m;
    }();
    return l;
}

void count(std::string_view stage, const Decision& d) {
    std::lock_guard lock(counts_mutex);
    ++counts()[DecisionKey{std::string(stage), d.rule.empty() ? "-" : d.rule, to_string(d.verdict)}];
}

}  // namespace

std::string log_quoted(std::string_view v) {
    std::string out = "\"";
    for (char c : v) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) out += '?';
        else if (c == '"' || c == '\\') { out += '\\'; out += c; }
        else out += c;
    }
    return out + "\"";
}

namespace {

std::string line(const SessionState& s, const Decision& d, const DecisionContext& ctx) {
    std::string out = "client=" + s.client.to_string();
    if (s.client_key != s.client.to_string()) out += " key=" + s.client_key;
    out += " rule=" + d.rule + " stage=" + std::string(ctx.stage) + " verdict=" + to_string(d.verdict);
    if (d.refused()) out += " reply=" + log_quoted(d.reply.to_string());
    if (!ctx.sender.empty() || ctx.stage == "mail") out += " from=" + log_quoted(ctx.sender);
    if (!ctx.recipient.empty()) out += " to=" + log_quoted(ctx.recipient);
    if (!s.sasl_user.empty()) out += " sasl_user=" + log_quoted(s.sasl_user);
    out += " via=" + std::string(ctx.front_end);
    if (!d.detail.empty()) out += " detail=" + log_quoted(d.detail);
    return out;
}

}  // namespace

void log_decision(const SessionState& s, const Decision& d, const DecisionContext& ctx) {
    count(ctx.stage, d);
    if (ctx.started != std::chrono::steady_clock::time_point{}) {
        auto it = latency().find(std::string(ctx.stage));
        if (it != latency().end()) {
            it->second.observe(std::chrono::duration<double>(SystemClock::monotonic() - ctx.started).count());
        }
    }
    for (const auto& w : d.warnings) {
        if (w.refused()) security_log()->warn("would-refuse (warn mode) {}", line(s, w, ctx));
        else spdlog::warn("{}", line(s, w, ctx));
    }
    if (d.refused()) {
        security_log()->info("refused {}", line(s, d, ctx));
        if (observer() && ctx.observed) observer()(s, d, ctx);
    } else if (d.verdict == Verdict::permit) {
        spdlog::info("permit {}", line(s, d, ctx));
    } else if (d.verdict == Verdict::hold) {
        security_log()->info("held {}", line(s, d, ctx));
    } else if (d.verdict == Verdict::discard) {
        security_log()->info("discarded {}", line(s, d, ctx));
    }
}

void log_block_set(const SessionState& s, const Decision& block, const DecisionContext& ctx) {
    std::string out = "client=" + s.client.to_string();
    if (s.client_key != s.client.to_string()) out += " key=" + s.client_key;
    security_log()->warn("blocked {} rule={} stage={} via={} detail={} then={}", out, block.rule, ctx.stage,
                         ctx.front_end, log_quoted(block.detail), log_quoted(block.reply.to_string()));
    if (observer()) observer()(s, block, ctx);
}

void set_refusal_observer(RefusalObserver o) { observer() = std::move(o); }

const std::map<std::string, LatencyHistogram>& decision_latency() { return latency(); }

std::map<DecisionKey, std::uint64_t> decision_counts() {
    std::lock_guard lock(counts_mutex);
    return counts();
}

}  // namespace relayguard
