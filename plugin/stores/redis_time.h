// Times as the Redis stores write them: milliseconds since the epoch (or a
// length in milliseconds), in decimal, passed in by the calling node so its
// clock decides, not the server's (redis_scripts.h).
#pragma once

#include <cstdlib>
#include <string>

#include "common/base/clock.h"

namespace relayguard::redis_time {

inline std::string ms(TimePoint t) { return std::to_string(t.time_since_epoch().count()); }
inline std::string ms(Duration d) { return std::to_string(d.count()); }
inline TimePoint at_ms(const std::string& text) { return TimePoint(Duration(std::strtoll(text.c_str(), nullptr, 10))); }

}  // namespace relayguard::redis_time
