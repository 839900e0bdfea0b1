// Small text encodings both daemons need: base64 (SMTP AUTH, POP3 APOP's
// neighbours, RFC 2047 subjects), ASCII case folding for protocol verbs,
// whole-string number parsing that refuses trailing junk, and mail dates.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/base/clock.h"

namespace relayguard {

std::string base64_encode(std::string_view in);
// std::nullopt when `in` is not base64.
std::optional<std::string> base64_decode(std::string_view in);

// ASCII upper case: protocol keywords, never user text.
std::string ascii_upper(std::string_view s);
// ASCII lower case: domains, header names, language tags; other bytes stay.
std::string ascii_lower(std::string_view s);

// "Mon, 23 Nov 2026 00:30:00 +0000": a mail Date, always in UTC.
std::string rfc5322_date(TimePoint t);

// `t` as strftime's `format` writes it, in this host's local time or in UTC.
enum class TimeZone { local, utc };
std::string format_time(TimePoint t, const char* format, TimeZone zone);

// The whole of `s` as a decimal number, or std::nullopt.
std::optional<long long> parse_whole_number(std::string_view s);

}  // namespace relayguard
