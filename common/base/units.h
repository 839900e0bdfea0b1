// Sizes ("10MB") and durations ("90s", "1h") as admins write them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/clock.h"

namespace relayguard {

// Bytes; suffixes B, KB, MB, GB (powers of 1024, as Postfix and most admins
// mean them), case-insensitive, K/M/G accepted alone. A bare number is bytes.
std::optional<std::uint64_t> parse_size(std::string_view text);

// ms, s, m, h, d, w; several may follow each other ("1h30m"). A bare
// number is refused: a unit must always be written.
std::optional<Duration> parse_duration(std::string_view text);

std::string format_duration(Duration d);
std::string format_size(std::uint64_t bytes);

}  // namespace relayguard
