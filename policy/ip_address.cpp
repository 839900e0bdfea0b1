// Parsing and matching of IP addresses and networks, by hand on bytes so the
// engine needs no socket headers and behaves the same on every platform.
#include "policy/ip_address.h"

#include <charconv>
#include <vector>

namespace relayguard {
namespace {

std::optional<std::array<std::uint8_t, 4>> parse_v4(std::string_view s) {
    std::array<std::uint8_t, 4> out{};
    for (int i = 0; i < 4; ++i) {
        if (i > 0) {
            if (s.empty() || s.front() != '.') return std::nullopt;
            s.remove_prefix(1);
        }
        std::size_t n = 0;
        while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
        // Leading zeros are refused: "010" is octal to some parsers, decimal to others.
        if (n == 0 || n > 3 || (n > 1 && s[0] == '0')) return std::nullopt;
        unsigned v = 0;
        std::from_chars(s.data(), s.data() + n, v);
        if (v > 255) return std::nullopt;
        out[i] = static_cast<std::uint8_t>(v);
        s.remove_prefix(n);
    }
    if (!s.empty()) return std::nullopt;
    return out;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Parses a run of colon-separated hex groups, with an optional trailing
// dotted quad, into 16-bit words.
bool parse_groups(std::string_view s, std::vector<std::uint16_t>& words, bool allow_v4_tail) {
    if (s.empty()) return true;
    while (true) {
        std::size_t colon = s.find(':');
        std::string_view group = s.substr(0, colon);
        if (colon == std::string_view::npos && allow_v4_tail && group.find('.') != std::string_view::npos) {
            auto v4 = parse_v4(group);
            if (!v4) return false;
            words.push_back(static_cast<std::uint16_t>((*v4)[0] << 8 | (*v4)[1]));
            words.push_back(static_cast<std::uint16_t>((*v4)[2] << 8 | (*v4)[3]));
            return true;
        }
        if (group.empty() || group.size() > 4) return false;
        unsigned v = 0;
        for (char c : group) {
            int h = hex_value(c);
            if (h < 0) return false;
            v = v << 4 | static_cast<unsigned>(h);
        }
        words.push_back(static_cast<std::uint16_t>(v));
        if (colon == std::string_view::npos) return true;
        s.remove_prefix(colon + 1);
    }
}

std::optional<std::array<std::uint8_t, 16>> parse_v6(std::string_view s) {
    std::vector<std::uint16_t> head, tail;
    std::size_t gap = s.find("::");
    if (gap != std::string_view::npos) {
        if (s.find("::", gap + 1) != std::string_view::npos) return std::nullopt;
        std::string_view right = s.substr(gap + 2);
        if (!parse_groups(s.substr(0, gap), head, false) || !parse_groups(right, tail, true)) return std::nullopt;
        if (head.size() + tail.size() > 7) return std::nullopt;
    } else {
        if (!parse_groups(s, head, true) || head.size() != 8) return std::nullopt;
    }
    std::array<std::uint8_t, 16> out{};
    for (std::size_t i = 0; i < head.size(); ++i) {
        out[2 * i] = static_cast<std::uint8_t>(head[i] >> 8);
        out[2 * i + 1] = static_cast<std::uint8_t>(head[i] & 0xff);
    }
    std::size_t start = 8 - tail.size();
    for (std::size_t i = 0; i < tail.size(); ++i) {
        out[2 * (start + i)] = static_cast<std::uint8_t>(tail[i] >> 8);
        out[2 * (start + i) + 1] = static_cast<std::uint8_t>(tail[i] & 0xff);
    }
    return out;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
    // Postfix and Sendmail may hand over "[1.2.3.4]" or "IPv6:2001:db8::1".
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
    if (text.size() > 5 && (text.substr(0, 5) == "IPv6:" || text.substr(0, 5) == "ipv6:")) text.remove_prefix(5);
    IpAddress a;
    if (text.find(':') == std::string_view::npos) {
        auto v4 = parse_v4(text);
        if (!v4) return std::nullopt;
        a.v4_ = true;
        std::copy(v4->begin(), v4->end(), a.bytes_.begin());
        return a;
    }
    // Zone ids ("fe80::1%eth0") name an interface, not a client: drop them.
    if (auto pct = text.find('%'); pct != std::string_view::npos) text = text.substr(0, pct);
    auto v6 = parse_v6(text);
    if (!v6) return std::nullopt;
    static constexpr std::array<std::uint8_t, 12> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(mapped.begin(), mapped.end(), v6->begin())) {
        a.v4_ = true;
        std::copy(v6->begin() + 12, v6->end(), a.bytes_.begin());
        return a;
    }
    a.v4_ = false;
    a.bytes_ = *v6;
    return a;
}

IpAddress IpAddress::masked(int prefix) const {
    IpAddress out = *this;
    int bits = bit_count();
    if (prefix < 0) prefix = 0;
    for (int i = 0; i < bits / 8; ++i) {
        int keep = prefix - i * 8;
        if (keep >= 8) continue;
        out.bytes_[i] = keep <= 0 ? 0 : static_cast<std::uint8_t>(out.bytes_[i] & (0xff << (8 - keep)));
    }
    return out;
}

std::string IpAddress::to_string() const {
    if (v4_) {
        return std::to_string(bytes_[0]) + "." + std::to_string(bytes_[1]) + "." + std::to_string(bytes_[2]) + "." +
               std::to_string(bytes_[3]);
    }
    // RFC 5952: lower case, no leading zeros, the longest run (>1) of zero words as "::".
    std::array<unsigned, 8> w{};
    for (int i = 0; i < 8; ++i) w[i] = static_cast<unsigned>(bytes_[2 * i] << 8 | bytes_[2 * i + 1]);
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (w[i] != 0) { ++i; continue; }
        int j = i;
        while (j < 8 && w[j] == 0) ++j;
        if (j - i > best_len && j - i > 1) { best = i; best_len = j - i; }
        i = j;
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 8; ++i) {
        if (i == best) {
            out += "::";
            i += best_len - 1;
            continue;
        }
        if (!out.empty() && out.back() != ':') out += ':';
        char buf[4];
        int n = 0;
        unsigned v = w[i];
        do { buf[n++] = digits[v & 0xf]; v >>= 4; } while (v);
        while (n) out += buf[--n];
    }
    return out;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
    std::size_t slash = text.find('/');
    auto addr = IpAddress::parse(text.substr(0, slash));
    if (!addr) return std::nullopt;
    Cidr c;
    c.prefix_ = addr->bit_count();
    if (slash != std::string_view::npos) {
        std::string_view p = text.substr(slash + 1);
        int v = -1;
        bool written_as_v6 = text.substr(0, slash).find(':') != std::string_view::npos;
        auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
        if (ec != std::errc{} || end != p.data() + p.size() || p.empty() || v < 0 || v > (written_as_v6 ? 128 : 32)) {
            return std::nullopt;
        }
        // "::ffff:10.0.0.0/104" folds to IPv4: shift the prefix with it.
        if (addr->is_v4() && written_as_v6) {
            if (v < 96) return std::nullopt;
            v -= 96;
        }
        c.prefix_ = v;
    }
    c.network_ = addr->masked(c.prefix_);
    return c;
}

bool Cidr::contains(const IpAddress& addr) const {
    return addr.is_v4() == network_.is_v4() && addr.masked(prefix_) == network_;
}

std::string Cidr::to_string() const { return network_.to_string() + "/" + std::to_string(prefix_); }

}  // namespace relayguard
