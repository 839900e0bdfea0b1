// IP addresses and CIDR networks as the engine sees them: parsed once from
// the MTA's text, compared as bytes. IPv4-mapped IPv6 (::ffff:a.b.c.d) is
// folded to IPv4 so one client never has two identities.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace relayguard {

class IpAddress {
public:
    static std::optional<IpAddress> parse(std::string_view text);

    bool is_v4() const { return v4_; }
    // Network byte order; IPv4 uses the first four bytes.
    const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
    int bit_count() const { return v4_ ? 32 : 128; }

    // The address with every bit after the first `prefix` bits cleared.
    IpAddress masked(int prefix) const;
    std::string to_string() const;

    friend bool operator==(const IpAddress&, const IpAddress&) = default;

private:
    bool v4_ = true;
    std::array<std::uint8_t, 16> bytes_{};
};

class Cidr {
public:
    // "192.0.2.0/24", "2001:db8::/32" or a bare address (a host network).
    static std::optional<Cidr> parse(std::string_view text);

    bool contains(const IpAddress& addr) const;
    std::string to_string() const;
    const IpAddress& network() const { return network_; }
    int prefix() const { return prefix_; }

private:
    IpAddress network_;
    int prefix_ = 0;
};

}  // namespace relayguard
