// What an OAuth2 token endpoint answers, parsed defensively: the body comes
// from the network, and a token taken from it is later written into a SASL
// exchange and a file, so every field is bounded and every token is checked
// to be printable ASCII without blanks (no CR, LF or ^A can ride along).
// RFC 6749 5.1 (a grant) and 5.2 (an error), RFC 8628 3.2 (a device
// authorisation) and 3.5 (authorization_pending, slow_down).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace relayguard {

// The largest body taken from a token endpoint; real ones answer in a few KiB.
constexpr std::size_t max_token_body = 64 * 1024;

struct TokenGrant {
    std::string access_token;
    std::string refresh_token;  // "" when the server rotated none
    std::chrono::seconds expires_in{0};
    std::string scope;          // "" when the server did not say
};

// A parsed answer: a grant, or the server's error code ("invalid_grant",
// "authorization_pending", ...) with its description.
struct TokenAnswer {
    std::optional<TokenGrant> grant;
    std::string error;
    std::string description;
};

// `content_type` is the response's Content-Type; anything but JSON is refused.
// A failure says what was wrong with the body (never the body itself).
Result<TokenAnswer> parse_token_answer(std::string_view body, std::string_view content_type);

struct DeviceAuthorization {
    std::string device_code;
    std::string user_code;
    std::string verification_uri;
    std::string verification_uri_complete;  // "" when not given
    std::chrono::seconds expires_in{0};
    std::chrono::seconds interval{5};
};

// The device authorisation endpoint's answer; an error answer is a failure
// naming the server's error code.
Result<DeviceAuthorization> parse_device_authorization(std::string_view body, std::string_view content_type);

// A token as it may be stored and sent: 1 to 16384 printable ASCII
// characters, no blanks.
bool plausible_token(std::string_view token);

}  // namespace relayguard
