// DNS answers as the resolver reads them: records of the asked type, the
// smallest TTL, compressed names, the null MX, and malformed messages refused.
#include <catch2/catch.hpp>

#include "common/net/dns_message.h"
#include "plugin/stores/resolver_dns_answers.h"

using namespace relayguard;

namespace {

// Builds a reply to one question, name compression for answers pointing at it.
struct Message {
    std::vector<unsigned char> bytes;
    explicit Message(const std::string& qname, DnsType qtype, int answers) {
        bytes = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, static_cast<unsigned char>(answers), 0, 0, 0, 0};
        name(qname);
        u16(static_cast<std::uint16_t>(qtype));
        u16(1);
    }
    void name(const std::string& n) {
        std::size_t start = 0;
        while (start < n.size()) {
            auto dot = n.find('.', start);
            if (dot == std::string::npos) dot = n.size();
            bytes.push_back(static_cast<unsigned char>(dot - start));
            bytes.insert(bytes.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
            start = dot + 1;
        }
        bytes.push_back(0);
    }
    void u16(std::uint16_t v) {
        bytes.push_back(static_cast<unsigned char>(v >> 8));
        bytes.push_back(static_cast<unsigned char>(v & 0xff));
    }
    void u32(std::uint32_t v) {
        u16(static_cast<std::uint16_t>(v >> 16));
        u16(static_cast<std::uint16_t>(v & 0xffff));
    }
    // An answer whose owner is the question's name (pointer to offset 12).
    void answer(DnsType type, std::uint32_t ttl, const std::vector<unsigned char>& rdata) {
        bytes.push_back(0xc0);
        bytes.push_back(12);
        u16(static_cast<std::uint16_t>(type));
        u16(1);
        u32(ttl);
        u16(static_cast<std::uint16_t>(rdata.size()));
        bytes.insert(bytes.end(), rdata.begin(), rdata.end());
    }
    std::optional<DnsAnswer> parse(DnsType type) const {
        return parse_dns_answer(bytes.data(), static_cast<int>(bytes.size()), type);
    }
};

std::vector<unsigned char> mx_rdata(std::uint16_t preference, const std::string& host) {
    Message scratch("x", DnsType::a, 0);
    std::vector<unsigned char> out{static_cast<unsigned char>(preference >> 8), static_cast<unsigned char>(preference)};
    scratch.bytes.clear();
    scratch.name(host);
    out.insert(out.end(), scratch.bytes.begin(), scratch.bytes.end());
    return out;
}

}  // namespace

TEST_CASE("A and AAAA answers give addresses and the smallest TTL", "[dns]") {
    Message m("example.test", DnsType::a, 2);
    m.answer(DnsType::a, 300, {192, 0, 2, 10});
    m.answer(DnsType::a, 60, {192, 0, 2, 11});
    auto a = m.parse(DnsType::a);
    REQUIRE(a);
    REQUIRE(a->records.size() == 2);
    REQUIRE(a->records[0].value == "192.0.2.10");
    REQUIRE(a->ttl == 60);

    Message six("example.test", DnsType::aaaa, 1);
    six.answer(DnsType::aaaa, 10, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    REQUIRE(six.parse(DnsType::aaaa)->records[0].value == "2001:db8::1");
}

TEST_CASE("MX answers give preference and host; a null MX is the root", "[dns]") {
    Message m("example.test", DnsType::mx, 2);
    m.answer(DnsType::mx, 3600, mx_rdata(10, "mx1.example.test"));
    m.answer(DnsType::mx, 3600, mx_rdata(20, "mx2.example.test"));
    auto mx = m.parse(DnsType::mx);
    REQUIRE(mx->records.size() == 2);
    REQUIRE(mx->records[1].preference == 20);
    REQUIRE(mx->records[1].value == "mx2.example.test");

    Message null("nomail.test", DnsType::mx, 1);
    null.answer(DnsType::mx, 3600, {0, 0, 0});  // preference 0, exchange "."
    auto n = null.parse(DnsType::mx);
    REQUIRE(n->records.size() == 1);
    REQUIRE(n->records[0].value.empty());
}

TEST_CASE("records of another type are skipped but bound the TTL", "[dns]") {
    Message m("alias.test", DnsType::a, 2);
    Message target("real.test", DnsType::a, 0);
    target.bytes.clear();
    target.name("real.test");
    m.answer(DnsType::ptr, 5, target.bytes);  // stands in for a CNAME: another type
    m.answer(DnsType::a, 600, {192, 0, 2, 1});
    auto a = m.parse(DnsType::a);
    REQUIRE(a->records.size() == 1);
    REQUIRE(a->ttl == 5);
}

TEST_CASE("malformed messages are refused, not read past their end", "[dns]") {
    Message m("example.test", DnsType::a, 1);
    m.answer(DnsType::a, 300, {192, 0, 2, 10});
    for (std::size_t cut = 0; cut < m.bytes.size(); ++cut) {
        INFO(cut);
        auto r = parse_dns_answer(m.bytes.data(), static_cast<int>(cut), DnsType::a);
        REQUIRE_FALSE(r);
    }
    Message bad("example.test", DnsType::a, 1);
    bad.answer(DnsType::a, 300, {192, 0, 2});  // three bytes for an A
    REQUIRE_FALSE(bad.parse(DnsType::a));
    REQUIRE_FALSE(parse_dns_answer(nullptr, 0, DnsType::a));
}

TEST_CASE("reverse names for PTR lookups", "[dns]") {
    REQUIRE(reverse_dns_name(*IpAddress::parse("192.0.2.5")) == "5.2.0.192.in-addr.arpa");
    REQUIRE(reverse_dns_name(*IpAddress::parse("2001:db8::567:89ab")) ==
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    // IPv4-mapped IPv6 is the IPv4 client.
    REQUIRE(reverse_dns_name(*IpAddress::parse("::ffff:192.0.2.5")) == "5.2.0.192.in-addr.arpa");
}
