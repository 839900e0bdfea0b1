// A named set of networks ("internal", "partners"), defined once in the
// config and referred to by name from every rule that trusts or exempts.
#pragma once

#include <string>
#include <vector>

#include "policy/ip_address.h"

namespace relayguard {

struct IpGroup {
    std::string name;
    std::vector<Cidr> networks;

    bool contains(const IpAddress& addr) const {
        for (const auto& n : networks) {
            if (n.contains(addr)) return true;
        }
        return false;
    }
};

// The first group in `groups` that contains `addr`, or nullptr.
inline const IpGroup* find_group(const std::vector<IpGroup>& groups, const IpAddress& addr) {
    for (const auto& g : groups) {
        if (g.contains(addr)) return &g;
    }
    return nullptr;
}

}  // namespace relayguard
