// Size and duration parsing; see the header.
#include "common/base/units.h"

#include <cctype>
#include <limits>

namespace relayguard {
namespace {

std::string lower(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (!std::isspace(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

// Reads the leading digits; false on none or on overflow.
bool read_number(std::string_view& s, std::uint64_t& out) {
    std::size_t n = 0;
    out = 0;
    while (n < s.size() && s[n] >= '0' && s[n] <= '9') {
        std::uint64_t digit = static_cast<std::uint64_t>(s[n] - '0');
        if (out > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return false;
        out = out * 10 + digit;
        ++n;
    }
    s.remove_prefix(n);
    return n > 0;
}

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text) {
    std::string t = lower(text);
    std::string_view s = t;
    std::uint64_t n = 0;
    if (!read_number(s, n)) return std::nullopt;
    std::uint64_t mult = 1;
    if (s.empty() || s == "b") mult = 1;
    else if (s == "k" || s == "kb") mult = 1ull << 10;
    else if (s == "m" || s == "mb") mult = 1ull << 20;
    else if (s == "g" || s == "gb") mult = 1ull << 30;
    else return std::nullopt;
    if (n > std::numeric_limits<std::uint64_t>::max() / mult) return std::nullopt;
    return n * mult;
}

std::optional<Duration> parse_duration(std::string_view text) {
    std::string t = lower(text);
    std::string_view s = t;
    if (s.empty()) return std::nullopt;
    std::int64_t total_ms = 0;
    constexpr std::int64_t cap = std::int64_t(100) * 365 * 24 * 3600 * 1000;  // a century is plenty
    while (!s.empty()) {
        std::uint64_t n = 0;
        if (!read_number(s, n) || n > static_cast<std::uint64_t>(cap)) return std::nullopt;
        std::int64_t unit = 0;
        if (s.rfind("ms", 0) == 0) { unit = 1; s.remove_prefix(2); }
        else if (!s.empty() && s[0] == 's') { unit = 1000; s.remove_prefix(1); }
        else if (!s.empty() && s[0] == 'm') { unit = 60'000; s.remove_prefix(1); }
        else if (!s.empty() && s[0] == 'h') { unit = 3'600'000; s.remove_prefix(1); }
        else if (!s.empty() && s[0] == 'd') { unit = 86'400'000; s.remove_prefix(1); }
        else if (!s.empty() && s[0] == 'w') { unit = 7 * 86'400'000ll; s.remove_prefix(1); }
        else return std::nullopt;
        if (static_cast<std::int64_t>(n) > (cap - total_ms) / unit) return std::nullopt;
        total_ms += static_cast<std::int64_t>(n) * unit;
    }
    return Duration(total_ms);
}

std::string format_duration(Duration d) {
    std::int64_t ms = d.count();
    if (ms == 0) return "0s";
    struct Unit { std::int64_t size; const char* name; };
    static constexpr Unit units[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}, {1, "ms"}};
    for (const auto& u : units) {
        if (ms % u.size == 0) return std::to_string(ms / u.size) + u.name;
    }
    return std::to_string(ms) + "ms";
}

std::string format_size(std::uint64_t bytes) {
    static constexpr struct { std::uint64_t size; const char* name; } units[] = {{1ull << 30, "GB"}, {1ull << 20, "MB"}, {1ull << 10, "KB"}};
    for (const auto& u : units) {
        if (bytes >= u.size && bytes % u.size == 0) return std::to_string(bytes / u.size) + u.name;
    }
    return std::to_string(bytes) + "B";
}

}  // namespace relayguard
