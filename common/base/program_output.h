// Runs a helper program (postconf, postmap) without a shell and takes what
// it prints, within a time and size bound: a wedged or chatty helper costs
// the caller a clear error, never a hang or unbounded memory.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace relayguard {

struct ProgramOutput {
    int exit_status = 0;  // the program's exit code; 128 + N when killed by signal N
    std::string out;      // standard output
    std::string err;      // standard error, the first lines of it
};

// argv[0] without a '/' is looked up in PATH, then in /usr/sbin and /sbin
// (where Postfix's tools live, which a daemon's PATH may lack). Fails when
// the program cannot start, runs past `timeout` (it is killed) or prints
// more than `max_output` bytes; a non-zero exit is not a failure here.
Result<ProgramOutput> run_program(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                  std::size_t max_output);

}  // namespace relayguard
