// DNS answer parsing; see the header.
#include "common/net/dns_message.h"

#include <arpa/inet.h>
#include <ares.h>

#include <algorithm>
#include <memory>

namespace relayguard {

namespace {

std::uint16_t u16(const unsigned char* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }
std::uint32_t u32(const unsigned char* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

// Expands the name at `at`; answers its length in the message, or -1.
long expand(const unsigned char* at, const unsigned char* message, int length, std::string* out) {
    char* name = nullptr;
    long used = 0;
    if (ares_expand_name(at, message, length, &name, &used) != ARES_SUCCESS) return -1;
    std::unique_ptr<char, void (*)(void*)> owned(name, ares_free_string);
    if (out) *out = name;
    return used;
}

}  // namespace

const char* to_string(DnsType type) {
    switch (type) {
        case DnsType::a: return "A";
        case DnsType::aaaa: return "AAAA";
        case DnsType::mx: return "MX";
        case DnsType::ptr: return "PTR";
    }
    return "?";
}

std::optional<DnsAnswer> parse_dns_answer(const unsigned char* message, int length, DnsType type) {
    constexpr int header = 12;
    if (message == nullptr || length < header) return std::nullopt;
    const unsigned char* end = message + length;
    int questions = u16(message + 4);
    int answers = u16(message + 6);
    const unsigned char* p = message + header;
    for (int i = 0; i < questions; ++i) {
        long used = expand(p, message, length, nullptr);
        if (used < 0 || p + used + 4 > end) return std::nullopt;
        p += used + 4;  // name, type, class
    }
    DnsAnswer out;
    bool first = true;
    for (int i = 0; i < answers; ++i) {
        long used = expand(p, message, length, nullptr);
        if (used < 0 || p + used + 10 > end) return std::nullopt;
        p += used;
        std::uint16_t rr_type = u16(p);
        std::uint32_t ttl = u32(p + 4);
        std::uint16_t rdlength = u16(p + 8);
        p += 10;
        if (p + rdlength > end) return std::nullopt;
        // A CNAME's TTL bounds how long the records behind it may be kept.
        out.ttl = first ? ttl : std::min(out.ttl, ttl);
        first = false;
        if (rr_type == static_cast<std::uint16_t>(type)) {
            DnsRecord r;
            char text[INET6_ADDRSTRLEN] = {};
            switch (type) {
                case DnsType::a:
                    if (rdlength != 4) return std::nullopt;
                    inet_ntop(AF_INET, p, text, sizeof text);
                    r.value = text;
                    break;
                case DnsType::aaaa:
                    if (rdlength != 16) return std::nullopt;
                    inet_ntop(AF_INET6, p, text, sizeof text);
                    r.value = text;
                    break;
                case DnsType::mx:
                    if (rdlength < 3) return std::nullopt;
                    r.preference = u16(p);
                    if (expand(p + 2, message, length, &r.value) < 0) return std::nullopt;
                    break;
                case DnsType::ptr:
                    if (expand(p, message, length, &r.value) < 0) return std::nullopt;
                    break;
            }
            out.records.push_back(std::move(r));
        }
        p += rdlength;
    }
    return out;
}

}  // namespace relayguard
