// The resolver and the DNS checks against a real dnsmasq: every kind of
// answer, a server that does not answer (within the budget, or the SMTP
// stage's deadline when that is sooner), the cache (TTL, negative answers,
// shared lookups in flight, its bound) counted at the server.
#include <catch2/catch.hpp>

#include "common/base/system_clock.h"
#include "common/net/dns_resolver.h"
#include "common/base/stage_deadline.h"
#include "plugin/stores/resolver_dns_answers.h"
#include "tests/resolver/dnsmasq_process.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> records = {
    "host-record=mx.example.test,192.0.2.10",
    "mx-host=example.test,mx.example.test,10",
    "host-record=aonly.test,192.0.2.20",
    // RFC 7505 null MX: preference 0, exchange "." (rdata 0000 00)
    "dns-rr=nullmx.test,15,000000",
    "host-record=good.example.test,127.0.0.5",
    "ptr-record=7.0.0.127.in-addr.arpa,liar.example.test",
    "host-record=liar.example.test,192.0.2.99",
    "host-record=v6.example.test,2001:db8::5",
};

test::DnsmasqProcess& dnsmasq() {
    static test::DnsmasqProcess server(records, 300);
    return server;
}

ResolverSettings settings_for(const std::string& server) {
    ResolverSettings r;
    r.servers = {server};
    r.timeout = 300ms;
    r.tries = 2;
    return r;
}

const SystemClock system_clock;

std::unique_ptr<DnsResolver> resolver_for(const std::string& server, ResolverSettings r = {},
                                          const Clock& clock = system_clock) {
    if (r.servers.empty()) r = settings_for(server);
    auto made = DnsResolver::create(r, clock);
    REQUIRE(made);
    return std::move(*made);
}

SteadyTime soon() { return std::chrono::steady_clock::now() + 2s; }

}  // namespace

TEST_CASE("the resolver reads each kind of answer from a real server", "[dns]") {
    auto r = resolver_for(dnsmasq().server());
    auto mx = r->lookup("example.test", DnsType::mx, soon());
    REQUIRE(mx.outcome == DnsOutcome::answer);
    REQUIRE(mx.records.at(0).value == "mx.example.test");
    REQUIRE(mx.records.at(0).preference == 10);
    REQUIRE(r->lookup("mx.example.test", DnsType::a, soon()).records.at(0).value == "192.0.2.10");
    REQUIRE(r->lookup("v6.example.test", DnsType::aaaa, soon()).records.at(0).value == "2001:db8::5");
    REQUIRE(r->lookup("5.0.0.127.in-addr.arpa", DnsType::ptr, soon()).records.at(0).value == "good.example.test");
    REQUIRE(r->lookup("nowhere.test", DnsType::mx, soon()).outcome == DnsOutcome::no_such_domain);
    REQUIRE(r->lookup("aonly.test", DnsType::mx, soon()).outcome == DnsOutcome::no_data);
    // Outside its zones dnsmasq answers REFUSED: not an answer, only a reason to try later.
    auto refused = r->lookup("example.invalid", DnsType::mx, soon());
    REQUIRE(refused.outcome == DnsOutcome::temporary_failure);
    REQUIRE_FALSE(refused.why.empty());
}

TEST_CASE("the DNS checks' answers, one per case", "[dns]") {
    auto r = resolver_for(dnsmasq().server());
    ResolverDnsAnswers dns(*r);
    REQUIRE(dns.sender_domain("example.test") == DnsStatus::found);
    REQUIRE(dns.sender_domain("aonly.test") == DnsStatus::found);  // no MX, an A record: RFC 5321 5.1
    REQUIRE(dns.sender_domain("nowhere.test") == DnsStatus::not_found);
    REQUIRE(dns.sender_domain("good.example.test") == DnsStatus::found);
    REQUIRE(dns.sender_domain("nullmx.test") == DnsStatus::null_mx);
    REQUIRE(dns.sender_domain("example.invalid") == DnsStatus::temporary_failure);
    REQUIRE(dns.sender_domain("[192.0.2.1]") == DnsStatus::found);

    auto good = dns.client_ptr(*IpAddress::parse("127.0.0.5"), true);
    REQUIRE(good.status == DnsStatus::found);
    REQUIRE(good.forward_confirmed);
    REQUIRE(dns.client_ptr(*IpAddress::parse("127.0.0.6"), false).status == DnsStatus::not_found);
    auto liar = dns.client_ptr(*IpAddress::parse("127.0.0.7"), true);
    REQUIRE(liar.status == DnsStatus::found);
    REQUIRE(liar.names == std::vector<std::string>{"liar.example.test"});
    REQUIRE_FALSE(liar.forward_confirmed);
    REQUIRE_FALSE(liar.forward_lookup_failed);
}

TEST_CASE("answers are cached for their TTL, negative ones too, and counted at the server", "[dns]") {
    test::DnsmasqProcess server(records, 1);  // one-second TTL
    ResolverSettings s = settings_for(server.server());
    s.negative_ttl = 60s;
    ManualClock clock;
    auto r = resolver_for(server.server(), s, clock);
    for (int i = 0; i < 5; ++i) REQUIRE(r->lookup("mx.example.test", DnsType::a, soon()).outcome == DnsOutcome::answer);
    for (int i = 0; i < 5; ++i) REQUIRE(r->lookup("nowhere.test", DnsType::a, soon()).outcome == DnsOutcome::no_such_domain);
    REQUIRE(server.queries_for("A", "mx.example.test") == 1);
    REQUIRE(server.queries_for("A", "nowhere.test") == 1);
    REQUIRE(r->queries_sent() == 2);
    REQUIRE(r->cache_hits() == 8);
    clock.advance(1100ms);  // the positive answer's TTL ends, the negative one's does not
    r->lookup("mx.example.test", DnsType::a, soon());
    r->lookup("nowhere.test", DnsType::a, soon());
    REQUIRE(server.queries_for("A", "mx.example.test") == 2);
    REQUIRE(server.queries_for("A", "nowhere.test") == 1);
}

TEST_CASE("identical lookups in flight share one query", "[dns]") {
    test::DnsmasqProcess server(records, 300);
    auto r = resolver_for(server.server());
    server.pause();  // hold the answer so every thread asks while it is pending
    std::vector<std::thread> threads;
    std::atomic<int> answered{0};
    for (int i = 0; i < 16; ++i) {
        threads.emplace_back([&] {
            if (r->lookup("example.test", DnsType::mx, soon()).outcome == DnsOutcome::answer) ++answered;
        });
    }
    std::this_thread::sleep_for(100ms);
    server.resume();
    for (auto& t : threads) t.join();
    REQUIRE(answered == 16);
    REQUIRE(r->queries_sent() == 1);
}

TEST_CASE("a server that does not answer gives a temporary failure within the budget", "[dns]") {
    test::DnsmasqProcess server(records, 300);
    ResolverSettings s = settings_for(server.server());
    s.timeout = 200ms;
    s.tries = 2;
    auto r = resolver_for(server.server(), s);
    ResolverDnsAnswers dns(*r);
    server.pause();
    auto started = std::chrono::steady_clock::now();
    REQUIRE(dns.sender_domain("example.test") == DnsStatus::temporary_failure);
    auto took = std::chrono::steady_clock::now() - started;
    REQUIRE(took >= 390ms);  // it did wait for the server, the whole budget (2 x 200 ms)
    REQUIRE(took < 600ms);
    REQUIRE(dns.client_ptr(*IpAddress::parse("127.0.0.5"), false).status == DnsStatus::temporary_failure);
    server.resume();

    // Nothing listening at all: the port is refused and the answer is immediate.
    ResolverSettings nowhere = settings_for("127.0.0.1:" + std::to_string(test::free_loopback_port()));
    auto lonely = resolver_for("", nowhere);
    ResolverDnsAnswers none(*lonely);
    started = std::chrono::steady_clock::now();
    REQUIRE(none.sender_domain("example.test") == DnsStatus::temporary_failure);
    REQUIRE(std::chrono::steady_clock::now() - started < 1s);
}

TEST_CASE("a check gives up at its SMTP stage's deadline when that comes before the budget", "[dns]") {
    test::DnsmasqProcess server(records, 300);
    ResolverSettings s = settings_for(server.server());
    s.timeout = 5s;
    s.tries = 1;
    auto r = resolver_for(server.server(), s);
    ResolverDnsAnswers dns(*r);
    server.pause();
    auto started = std::chrono::steady_clock::now();
    {
        StageDeadline stage(StageDeadline::from_now(300ms));
        REQUIRE(dns.sender_domain("example.test") == DnsStatus::temporary_failure);
        REQUIRE(dns.client_ptr(*IpAddress::parse("127.0.0.5"), true).status == DnsStatus::temporary_failure);
    }
    auto took = std::chrono::steady_clock::now() - started;
    server.resume();
    REQUIRE(took >= 290ms);  // it waited for the server until the stage's deadline
    REQUIRE(took < 800ms);   // and not for the 5 s budget
}

TEST_CASE("the cache stays within its bound", "[dns]") {
    ResolverSettings s = settings_for(dnsmasq().server());
    s.cache_max_entries = 20;
    auto r = resolver_for(dnsmasq().server(), s);
    for (int i = 0; i < 200; ++i) r->lookup("n" + std::to_string(i) + ".test", DnsType::a, soon());
    REQUIRE(r->cache_size() <= 20);
    REQUIRE(r->queries_sent() == 200);
}
