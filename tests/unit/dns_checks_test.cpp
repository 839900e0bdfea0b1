// DNS checks through a fake DnsAnswers: permanent answers give the
// configured 5xx, temporary failures only ever a 4xx.
#include <catch2/catch.hpp>

#include <map>

#include "harness.h"

using namespace relayguard;
using namespace relayguard::test;

namespace {
struct FakeDns : DnsAnswers {
    std::map<std::string, DnsStatus> domains;
    std::map<std::string, PtrAnswer> ptrs;
    int sender_lookups = 0;
    int ptr_lookups = 0;
    std::vector<std::string> prepared;
    DnsStatus sender_domain(std::string_view d) override {
        ++sender_lookups;
        auto it = domains.find(std::string(d));
        return it == domains.end() ? DnsStatus::not_found : it->second;
    }
    void prepare_client(const IpAddress& a) override { prepared.push_back(a.to_string()); }
    PtrAnswer client_ptr(const IpAddress& a, bool) override {
        ++ptr_lookups;
        auto it = ptrs.find(a.to_string());
        if (it == ptrs.end()) return PtrAnswer{DnsStatus::not_found, {}, false, false};
        return it->second;
    }
};
}  // namespace

TEST_CASE("sender domain must exist", "[dns]") {
    FakeDns dns;
    dns.domains = {{"good.example", DnsStatus::found}, {"nomail.example", DnsStatus::null_mx},
                   {"flaky.example", DnsStatus::temporary_failure}};
    auto s = base_settings();
    s.dns.require_sender_domain = true;
    Harness h(s, &dns);
    auto c = h.connect("192.0.2.1");
    REQUIRE_FALSE(h.mail(c, "a@good.example").refused());
    Decision missing = h.mail(c, "a@missing.example");
    REQUIRE(missing.verdict == Verdict::reject);
    REQUIRE(missing.reply.code == 550);
    REQUIRE(missing.reply.status == "5.1.8");
    REQUIRE(missing.rule == "sender_domain");
    REQUIRE(h.mail(c, "a@nomail.example").reply.status == "5.7.27");
    Decision flaky = h.mail(c, "a@flaky.example");
    REQUIRE(flaky.verdict == Verdict::tempfail);
    REQUIRE(flaky.reply.code == 451);
    // The null sender is never looked up.
    int before = dns.sender_lookups;
    REQUIRE_FALSE(h.mail(c, "").refused());
    REQUIRE(dns.sender_lookups == before);
}

TEST_CASE("client must have a PTR record, optionally forward-confirmed", "[dns]") {
    FakeDns dns;
    dns.ptrs["192.0.2.1"] = PtrAnswer{DnsStatus::found, {"mx.good.example"}, true, false};
    dns.ptrs["192.0.2.2"] = PtrAnswer{DnsStatus::found, {"forged.example"}, false, false};
    dns.ptrs["192.0.2.3"] = PtrAnswer{DnsStatus::temporary_failure, {}, false, false};
    auto s = base_settings();
    s.dns.require_client_ptr = true;
    s.dns.require_forward_confirmed_ptr = true;
    s.dns.exempt_groups.push_back(group("internal", {"10.0.0.0/8"}));
    Harness h(s, &dns);
    auto ok = h.connect("192.0.2.1");
    REQUIRE_FALSE(h.mail(ok).refused());
    auto forged = h.connect("192.0.2.2");
    REQUIRE(h.mail(forged).reply.text.find("does not match") != std::string::npos);
    auto none = h.connect("192.0.2.9");
    Decision d = h.mail(none);
    REQUIRE(d.reply.code == 550);
    REQUIRE(d.reply.status == "5.7.25");
    auto flaky = h.connect("192.0.2.3");
    REQUIRE(h.mail(flaky).verdict == Verdict::tempfail);
    // Exempt group and authenticated users skip the PTR check.
    auto internal = h.connect("10.1.1.1");
    REQUIRE_FALSE(h.mail(internal).refused());
    auto user = h.connect("192.0.2.9");
    REQUIRE_FALSE(h.engine.on_mail(user, MailFacts{"a@example.org", std::nullopt, "alice"}).refused());
}

TEST_CASE("the PTR lookup starts at connect and is asked once per session", "[dns]") {
    FakeDns dns;
    dns.ptrs["192.0.2.1"] = PtrAnswer{DnsStatus::found, {"mail.example"}, false, false};
    dns.ptrs["192.0.2.2"] = PtrAnswer{DnsStatus::temporary_failure, {}, false, false};
    auto s = base_settings();
    s.dns.require_client_ptr = true;
    s.dns.exempt_groups.push_back(group("internal", {"10.0.0.0/8"}));
    Harness h(s, &dns);
    auto c = h.connect("192.0.2.1");
    REQUIRE(dns.prepared == std::vector<std::string>{"192.0.2.1"});
    REQUIRE_FALSE(h.mail(c, "a@x.example").refused());
    REQUIRE_FALSE(h.mail(c, "b@x.example").refused());
    REQUIRE(dns.ptr_lookups == 1);
    // A temporary failure is not kept: the next MAIL asks again.
    auto flaky = h.connect("192.0.2.2");
    REQUIRE(h.mail(flaky, "a@x.example").verdict == Verdict::tempfail);
    REQUIRE(h.mail(flaky, "a@x.example").verdict == Verdict::tempfail);
    REQUIRE(dns.ptr_lookups == 3);
    // An exempt client is never looked up, not even ahead of time.
    h.connect("10.1.2.3");
    REQUIRE(dns.prepared.size() == 2);
}
