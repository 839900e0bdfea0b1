// Local-domain matching; see the header.
#include "policy/domain_set.h"

namespace relayguard {

std::string DomainSet::normalise(std::string_view domain) {
    while (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    std::string out(domain);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

void DomainSet::add(std::string_view pattern, bool subdomains) {
    if (!pattern.empty() && pattern.front() == '.') {
        parents_.insert(normalise(pattern.substr(1)));
        return;
    }
    std::string d = normalise(pattern);
    if (subdomains) parents_.insert(d);
    exact_.insert(std::move(d));
}

bool DomainSet::contains(std::string_view domain) const {
    std::string d = normalise(domain);
    if (d.empty()) return false;
    if (exact_.count(d)) return true;
    // Walk up the labels: a.b.example.org -> b.example.org -> example.org -> org.
    for (std::size_t dot = d.find('.'); dot != std::string::npos; dot = d.find('.', dot + 1)) {
        if (parents_.count(d.substr(dot + 1))) return true;
    }
    return false;
}

}  // namespace relayguard
