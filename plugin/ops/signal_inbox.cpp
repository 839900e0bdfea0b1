// Signals through a self-pipe; see the header.
#include "plugin/ops/signal_inbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace relayguard {

namespace {

constexpr int caught[] = {SIGHUP, SIGTERM, SIGINT};

// The handler's only state: the pipe's write end (non-blocking, so a full
// pipe drops a signal rather than hanging the handler).
volatile sig_atomic_t inbox_fd = -1;

extern "C" void on_signal(int sig) {
    int saved = errno;
    unsigned char b = static_cast<unsigned char>(sig);
    if (inbox_fd >= 0 && ::write(inbox_fd, &b, 1) != 1) {
        // The pipe is full: this signal is dropped, the ones in it are read.
    }
    errno = saved;
}

sigset_t caught_set() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : caught) sigaddset(&set, sig);
    return set;
}

}  // namespace

SignalInbox::SignalInbox(Passkey, UniqueFd read_end, UniqueFd write_end)
    : read_end_(std::move(read_end)), write_end_(std::move(write_end)) {}

Result<std::unique_ptr<SignalInbox>> SignalInbox::open() {
    using R = Result<std::unique_ptr<SignalInbox>>;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return R::failure(std::string("pipe: ") + std::strerror(errno));
    auto inbox = std::make_unique<SignalInbox>(Passkey{}, UniqueFd(fds[0]), UniqueFd(fds[1]));
    inbox_fd = inbox->write_end_.get();
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    // SA_NODEFER: without it the kernel blocks a signal while its own
    // handler runs, and one more arriving just then went to libmilter.
    sa.sa_flags = SA_RESTART | SA_NODEFER;
    for (int sig : caught) {
        if (::sigaction(sig, &sa, nullptr) != 0) return R::failure(std::string("sigaction: ") + std::strerror(errno));
    }
    sigset_t set = caught_set();
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    return inbox;
}

SignalInbox::~SignalInbox() {
    sigset_t set = caught_set();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig : caught) ::sigaction(sig, &sa, nullptr);
    inbox_fd = -1;
}

int SignalInbox::wait(std::chrono::milliseconds timeout) {
    pollfd p{read_end_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return 0;  // timeout, or EINTR: asked again
    unsigned char b = 0;
    return ::read(read_end_.get(), &b, 1) == 1 ? b : 0;
}

}  // namespace relayguard
