// What a DNS check adds to an SMTP stage, cold and with a warm cache, at p50
// and p99, next to glibc's res_nquery asking the same server the same kind of
// question in the same run.
//
//   dns_bench --server 127.0.0.1:5353 [--samples 2000]
//
// The server must answer A for any name under bench.test (dnsmasq:
// address=/bench.test/127.0.0.1, local=/bench.test/) and be authoritative
// for in-addr.arpa;
// bench/run-dns-bench.sh starts one.
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "common/base/system_clock.h"
#include "common/net/dns_resolver.h"
#include "plugin/stores/resolver_dns_answers.h"

using namespace relayguard;

namespace {

struct Percentiles {
    double p50 = 0, p99 = 0;
};

Percentiles measure(int samples, const std::function<void(int)>& one) {
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(samples));
    for (int i = 0; i < samples; ++i) {
        auto start = std::chrono::steady_clock::now();
        one(i);
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(us.begin(), us.end());
    return {us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)]};
}

void row(const char* what, Percentiles p, Percentiles peer) {
    std::printf("  %-44s %9.0f %9.0f   %5.2f x\n", what, p.p50, p.p99, p.p99 / peer.p99);
}

}  // namespace

int main(int argc, char** argv) {
    std::string server = "127.0.0.1:53";
    int samples = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        if (k == "--server") server = argv[i + 1];
        else if (k == "--samples") samples = std::stoi(argv[i + 1]);
    }
    ResolverSettings rs;
    rs.servers = {server};
    rs.timeout = std::chrono::seconds(2);
    rs.tries = 1;
    static const relayguard::SystemClock clock;
    auto made = DnsResolver::create(rs, clock);
    if (!made) {
        std::fprintf(stderr, "dns_bench: %s\n", made.error().c_str());
        return 1;
    }
    auto& resolver = **made;
    ResolverDnsAnswers dns(resolver);

    // The peer: glibc's stub resolver, pointed at the same server, no cache.
    struct __res_state res {};
    res_ninit(&res);
    auto colon = server.rfind(':');
    res.nscount = 1;
    res.nsaddr_list[0].sin_family = AF_INET;
    res.nsaddr_list[0].sin_port = htons(static_cast<std::uint16_t>(std::stoi(server.substr(colon + 1))));
    inet_pton(AF_INET, server.substr(0, colon).c_str(), &res.nsaddr_list[0].sin_addr);
    unsigned char answer[4096];
    Percentiles peer = measure(samples, [&](int i) {
        std::string name = "peer" + std::to_string(i) + ".bench.test";
        res_nquery(&res, name.c_str(), ns_c_in, ns_t_a, answer, sizeof answer);
    });

    std::size_t failures = 0;
    auto ip = [](int i) { return *IpAddress::parse("10.9." + std::to_string(i / 250 % 250) + "." + std::to_string(i % 250 + 1)); };
    Percentiles sender_cold = measure(samples, [&](int i) {
        if (dns.sender_domain("s" + std::to_string(i) + ".bench.test") != DnsStatus::found) ++failures;
    });
    Percentiles sender_warm = measure(samples, [&](int i) {
        if (dns.sender_domain("s" + std::to_string(i) + ".bench.test") != DnsStatus::found) ++failures;
    });
    Percentiles ptr_cold = measure(samples, [&](int i) { dns.client_ptr(ip(i), false); });
    std::uint64_t sent_before = resolver.queries_sent();
    Percentiles ptr_warm = measure(samples, [&](int i) { dns.client_ptr(ip(i), false); });
    std::uint64_t warm_queries = resolver.queries_sent() - sent_before;

    std::printf("dns_bench: %d samples each, server %s (loopback)\n", samples, server.c_str());
    std::printf("  %-44s %9s %9s   %s\n", "what", "p50 us", "p99 us", "p99 vs peer");
    row("peer: glibc res_nquery, one A query", peer, peer);
    row("sender domain check, cold (MX, then A+AAAA)", sender_cold, peer);
    row("sender domain check, warm cache", sender_warm, peer);
    row("client PTR check, cold (one PTR query)", ptr_cold, peer);
    row("client PTR check, warm cache", ptr_warm, peer);
    std::printf("  queries sent for %d warm PTR checks: %llu\n", samples, static_cast<unsigned long long>(warm_queries));
    std::printf("  sender checks that did not find the domain: %zu\n", failures);
    return failures == 0 ? 0 : 2;
}
