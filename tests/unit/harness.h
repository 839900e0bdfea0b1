// A decision engine wired to in-memory ports and a manual clock, plus a
// session driver, so a test reads like an SMTP dialogue.
#pragma once

#include <memory>
#include <string>

#include "policy/decision_engine.h"
#include "policy/memory_counter_store.h"

namespace relayguard::test {

inline IpAddress ip(const std::string& s) {
    auto a = IpAddress::parse(s);
    if (!a) throw std::runtime_error("bad test address " + s);
    return *a;
}

inline IpGroup group(const std::string& name, std::initializer_list<const char*> nets) {
    IpGroup g{name, {}};
    for (const char* n : nets) g.networks.push_back(*Cidr::parse(n));
    return g;
}

inline PolicySettings base_settings() {
    PolicySettings s;
    s.relay.local_domains.add("example.test", false);
    s.relay.trusted_groups.push_back(group("internal", {"10.0.0.0/8", "2001:db8:1::/48"}));
    return s;
}

struct Harness {
    explicit Harness(PolicySettings settings, DnsAnswers* dns = nullptr)
        : engine(std::move(settings), store, clock, &pop, dns) {}

    MemoryCounterStore store;
    MemoryPopWindowStore pop;
    ManualClock clock;
    DecisionEngine engine;
    int next_id = 0;

    SessionState connect(const std::string& addr, Decision* out = nullptr) {
        SessionState s;
        Decision d = engine.on_connect(s, ConnectFacts{ip(addr), "", "c" + std::to_string(++next_id)});
        if (out) *out = d;
        return s;
    }
    Decision mail(SessionState& s, const std::string& from = "sender@example.org",
                  std::optional<std::uint64_t> size = std::nullopt) {
        return engine.on_mail(s, MailFacts{from, size, ""});
    }
    Decision rcpt(SessionState& s, const std::string& to) { return engine.on_rcpt(s, RcptFacts{to, false, "", ""}); }
    Decision unknown_rcpt(SessionState& s, const std::string& to) {
        return engine.on_rcpt(s, RcptFacts{to, true, "5.1.1", ""});
    }
    // One whole message; answers the first refusal, or the end-of-message decision.
    Decision message(SessionState& s, const std::string& to = "user@example.test") {
        Decision d = mail(s);
        if (d.refused()) return d;
        d = rcpt(s, to);
        if (d.refused()) return d;
        d = engine.on_body(s, 100);
        if (d.refused()) return d;
        return engine.on_eom(s, EomFacts{});
    }
};

}  // namespace relayguard::test
