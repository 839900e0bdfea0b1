// The release this build is, as CMake's project() declares it: the one
// place the version is written (common/base/version.cpp.in is generated).
#pragma once

#include <string_view>

namespace relayguard {

std::string_view relayguard_version();

}  // namespace relayguard
