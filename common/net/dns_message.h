// Reading a DNS answer: the records of the asked type and the smallest TTL
// in the answer section. c-ares 1.18's own parsers give no TTL for MX or
// PTR, and a cache must honour it, so the fixed fields are read here; names
// are expanded by c-ares (ares_expand_name), compression pointers included.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace relayguard {

enum class DnsType : std::uint16_t { a = 1, ptr = 12, mx = 15, aaaa = 28 };

struct DnsRecord {
    std::string value;        // A/AAAA: the address as text; MX/PTR: the name, without the final dot ("" = root)
    std::uint16_t preference = 0;  // MX only
};

struct DnsAnswer {
    std::vector<DnsRecord> records;
    std::uint32_t ttl = 0;  // the smallest TTL of the answer section
};

// std::nullopt: the message is malformed.
std::optional<DnsAnswer> parse_dns_answer(const unsigned char* message, int length, DnsType type);

const char* to_string(DnsType type);

}  // namespace relayguard
