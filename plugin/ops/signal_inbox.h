// The daemon's control signals (SIGHUP, SIGTERM, SIGINT), caught by a handler
// that only writes the signal's number to a pipe, which the main thread reads.
//
// Why not sigwait: libmilter runs a thread of its own in sigwait for SIGHUP
// and SIGTERM, and takes either as "stop the milter". The kernel gives a
// signal sent to the process to the main thread whenever the main thread does
// not block it; with sigwait the main thread blocks it except while waiting,
// so a burst of SIGHUPs lost some to libmilter and stopped the daemon. Here
// the main thread never blocks them, and every other thread always does.
#pragma once

#include <chrono>
#include <memory>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace relayguard {

class SignalInbox {
    struct Passkey {
        explicit Passkey() = default;
    };

public:
    // Installs the handlers and unblocks the signals in the calling thread,
    // which must be the main thread; threads it starts later inherit that,
    // so it starts none that may not take them (see main.cpp).
    static Result<std::unique_ptr<SignalInbox>> open();
    SignalInbox(Passkey, UniqueFd read_end, UniqueFd write_end);  // through open() only
    SignalInbox(const SignalInbox&) = delete;
    SignalInbox& operator=(const SignalInbox&) = delete;
    // Blocks the signals again in this thread and puts back the default
    // handlers: from then on a SIGTERM sent to the process reaches libmilter's
    // thread, which is how the milter is told to stop.
    ~SignalInbox();

    // The next signal caught, or 0 when none came within `timeout`.
    int wait(std::chrono::milliseconds timeout);

private:
    UniqueFd read_end_;
    UniqueFd write_end_;
};

}  // namespace relayguard
