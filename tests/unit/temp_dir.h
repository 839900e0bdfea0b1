// A directory of its own for one test case, removed when the case ends.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace relayguard::test {

struct TempDir {
    std::string path = std::filesystem::temp_directory_path() / ("rg-test-" + std::to_string(getpid()) + "-" +
                                                                 std::to_string(std::rand()));
    TempDir() { std::filesystem::create_directories(path); }
    ~TempDir() { std::filesystem::remove_all(path); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

}  // namespace relayguard::test
