// Cluster routing helpers; see the header.
#include "common/redis/redis_routing.h"

#include <array>
#include <charconv>

namespace relayguard {

namespace {

constexpr std::array<std::uint16_t, 256> crc16_table() {
    std::array<std::uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
        std::uint16_t crc = static_cast<std::uint16_t>(i << 8);
        for (int b = 0; b < 8; ++b) crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
        t[i] = crc;
    }
    return t;
}

constexpr auto crc16_lookup = crc16_table();

std::uint16_t crc16(std::string_view s) {
    std::uint16_t crc = 0;
    for (unsigned char ch : s) crc = static_cast<std::uint16_t>((crc << 8) ^ crc16_lookup[((crc >> 8) ^ ch) & 0xff]);
    return crc;
}

std::optional<long long> to_number(std::string_view s) {
    long long v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

std::uint16_t redis_key_slot(std::string_view key) {
    // Only the text between the first '{' and the next '}' counts, when it is
    // not empty: that is how every counter of one client shares a slot.
    auto open = key.find('{');
    if (open != std::string_view::npos) {
        auto close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
    }
    return crc16(key) % redis_slot_count;
}

Result<std::vector<RedisSlotRange>> parse_cluster_slots(const RedisValue& reply, const RedisEndpoint& asked) {
    using R = Result<std::vector<RedisSlotRange>>;
    if (reply.type != RedisValue::Type::array) return R::failure("CLUSTER SLOTS: " + (reply.is_error() ? reply.str : "not an array"));
    std::vector<RedisSlotRange> out;
    for (const auto& entry : reply.elements) {
        if (entry.type != RedisValue::Type::array || entry.elements.size() < 3) return R::failure("CLUSTER SLOTS: short entry");
        const auto& first = entry.elements[0];
        const auto& last = entry.elements[1];
        const auto& node = entry.elements[2];
        if (first.type != RedisValue::Type::integer || last.type != RedisValue::Type::integer || first.integer < 0 ||
            last.integer >= redis_slot_count || first.integer > last.integer || node.type != RedisValue::Type::array ||
            node.elements.size() < 2 || node.elements[1].type != RedisValue::Type::integer) {
            return R::failure("CLUSTER SLOTS: malformed entry");
        }
        RedisSlotRange range;
        range.first = static_cast<std::uint16_t>(first.integer);
        range.last = static_cast<std::uint16_t>(last.integer);
        std::string host = node.elements[0].str;
        if (host.empty() || host == "?") {
            range.master = asked;
            range.master.port = static_cast<int>(node.elements[1].integer);
        } else {
            range.master.host = host;
            range.master.port = static_cast<int>(node.elements[1].integer);
        }
        out.push_back(std::move(range));
    }
    if (out.empty()) return R::failure("CLUSTER SLOTS: no slot is served");
    return out;
}

std::optional<RedisRedirect> parse_redirect(const RedisValue& reply) {
    if (!reply.is_error()) return std::nullopt;
    // "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381"
    std::string_view s = reply.str;
    RedisRedirect r;
    if (s.rfind("MOVED ", 0) == 0) {
        s.remove_prefix(6);
    } else if (s.rfind("ASK ", 0) == 0) {
        r.ask = true;
        s.remove_prefix(4);
    } else {
        return std::nullopt;
    }
    auto space = s.find(' ');
    if (space == std::string_view::npos) return std::nullopt;
    auto slot = to_number(s.substr(0, space));
    auto to = RedisEndpoint::parse(std::string(s.substr(space + 1)));
    if (!slot || *slot < 0 || *slot >= redis_slot_count || !to) return std::nullopt;
    r.slot = static_cast<std::uint16_t>(*slot);
    r.to = *to;
    return r;
}

}  // namespace relayguard
