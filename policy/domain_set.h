// The local domains: mail to them is accepted from anyone, mail elsewhere is
// relaying. Matching is case-insensitive and ignores a trailing dot.
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>

namespace relayguard {

class DomainSet {
public:
    // "example.org" matches itself, and its subdomains too when
    // `subdomains` is set; ".example.org" matches only its subdomains.
    void add(std::string_view pattern, bool subdomains);
    bool contains(std::string_view domain) const;
    bool empty() const { return exact_.empty() && parents_.empty(); }
    std::size_t size() const { return exact_.size() + parents_.size(); }

    static std::string normalise(std::string_view domain);

private:
    std::unordered_set<std::string> exact_;
    std::unordered_set<std::string> parents_;  // match any subdomain of these
};

}  // namespace relayguard
