// The syntax of an SMTP envelope as the relay client's intake reads it:
// the <path> and ESMTP parameters after MAIL FROM: / RCPT TO:, and the
// RFC 3461 values (NOTIFY, ORCPT, xtext) kept with a queued message. Pure
// functions over client bytes, fuzzed by fuzz/fuzz_envelope.cpp.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace relayguard {

// "<addr> PARAMS" after "MAIL FROM:" / "RCPT TO:"; std::nullopt if malformed
// (no closing '>', or a space, control byte or '<' in the address).
std::optional<std::pair<std::string, std::string>> path_and_params(std::string_view rest);

// ESMTP parameters ("SIZE=123 RET=HDRS"): keywords upper-cased, values as
// given; std::nullopt when a keyword is not RFC 5321's esmtp-keyword
// (a letter or digit, then letters, digits and '-') or a value is empty or
// holds a control byte.
using EsmtpParams = std::vector<std::pair<std::string, std::string>>;
std::optional<EsmtpParams> esmtp_params(std::string_view text);

// RFC 3461 xtext: printable ASCII but '+' and '=', or "+XX" hex.
bool valid_xtext(std::string_view v);

// NOTIFY=NEVER, or any of SUCCESS, FAILURE, DELAY; answers the upper-cased
// value, or "" when invalid.
std::string valid_notify(std::string_view v);

// ORCPT=addr-type;xtext: the type an atom ("rfc822"), the address xtext.
bool valid_orcpt(std::string_view v);

}  // namespace relayguard
