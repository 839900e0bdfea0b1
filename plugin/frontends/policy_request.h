// The Postfix policy delegation protocol on the wire: requests are lines of
// name=value ending with an empty line. This reader is defensive: it bounds
// the request size and the number of attributes, and it says "malformed"
// rather than guessing, so that one bad client loses only its connection.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace relayguard {

struct PolicyRequest {
    std::map<std::string, std::string, std::less<>> attributes;

    // The attribute's value, or "" when absent.
    std::string_view get(std::string_view name) const {
        auto it = attributes.find(name);
        return it == attributes.end() ? std::string_view{} : std::string_view(it->second);
    }
};

class PolicyRequestReader {
public:
    static constexpr std::size_t max_attributes = 256;

    explicit PolicyRequestReader(std::size_t max_request_bytes) : max_bytes_(max_request_bytes) {}

    void append(std::string_view bytes) { buffer_.append(bytes); }

    // The next complete request, if one is buffered. On a malformed request
    // (too big, a line without '=', too many attributes, no
    // request=smtpd_access_policy) `error` is set and the connection should
    // be closed.
    std::optional<PolicyRequest> next(std::string& error);

    bool has_partial() const { return !buffer_.empty(); }

private:
    std::size_t max_bytes_;
    std::string buffer_;
};

}  // namespace relayguard
