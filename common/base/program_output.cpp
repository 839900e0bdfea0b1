// The helper-program runner; see the header.
#include "common/base/program_output.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

#include "common/base/system_clock.h"
#include "common/base/unique_fd.h"

extern char** environ;

namespace relayguard {

namespace {

// The system's own directories first, then PATH's absolute entries: a
// relative entry would make the lookup depend on the working directory.
std::string find_program(const std::string& name) {
    if (name.find('/') != std::string::npos) return name;
    std::string dirs = "/usr/sbin:/sbin:";
    dirs += std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        auto end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        std::string dir = dirs.substr(start, end - start);
        if (!dir.empty() && dir.front() == '/') {
            std::string path = dir + "/" + name;
            if (::access(path.c_str(), X_OK) == 0) return path;
        }
        start = end + 1;
    }
    return "";
}

struct Pipe {
    UniqueFd read, write;
    static Result<Pipe> open() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) return Result<Pipe>::failure(std::string("pipe: ") + std::strerror(errno));
        return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
    }
};

}  // namespace

Result<ProgramOutput> run_program(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                  std::size_t max_output) {
    using R = Result<ProgramOutput>;
    if (argv.empty()) return R::failure("no program given");
    std::string path = find_program(argv[0]);
    if (path.empty()) return R::failure(argv[0] + ": not found in PATH, /usr/sbin or /sbin");
    auto out = Pipe::open();
    auto err = Pipe::open();
    if (!out) return R::failure(out.error());
    if (!err) return R::failure(err.error());

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out->write.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err->write.get(), 2);
    // The daemon blocks its signals in every thread; the helper starts with
    // none blocked and default handlers, so a SIGTERM or SIGKILL ends it.
    posix_spawnattr_t attrs;
    posix_spawnattr_init(&attrs);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attrs, &none);
    posix_spawnattr_setsigdefault(&attrs, &all);
    posix_spawnattr_setflags(&attrs, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<std::string> args = argv;
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    pid_t pid = 0;
    int spawned = ::posix_spawn(&pid, path.c_str(), &actions, &attrs, cargs.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attrs);
    if (spawned != 0) return R::failure(path + ": cannot run: " + std::strerror(spawned));
    out->write.reset();
    err->write.reset();

    ProgramOutput result;
    std::string failure;
    const auto deadline = SystemClock::monotonic() + timeout;
    bool out_open = true, err_open = true;
    while ((out_open || err_open) && failure.empty()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SystemClock::monotonic());
        if (left.count() <= 0) {
            failure = argv[0] + ": no answer within " + std::to_string(timeout.count()) + " ms";
            break;
        }
        pollfd fds[2] = {{out_open ? out->read.get() : -1, POLLIN, 0}, {err_open ? err->read.get() : -1, POLLIN, 0}};
        int ready = ::poll(fds, 2, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) {
            failure = std::string("poll: ") + std::strerror(errno);
            break;
        }
        char buf[8192];
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                (i == 0 ? out_open : err_open) = false;
                continue;
            }
            std::string& into = i == 0 ? result.out : result.err;
            // Standard error is kept only for the message it gives.
            if (i == 1 && into.size() > 4096) continue;
            into.append(buf, static_cast<std::size_t>(n));
            if (i == 0 && into.size() > max_output) {
                failure = argv[0] + ": printed more than " + std::to_string(max_output) + " bytes";
            }
        }
    }
    // A helper that closed its output may still be running: it gets the
    // rest of the time, then is killed like one that never answered.
    int status = 0;
    while (failure.empty()) {
        pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (done < 0 && errno != EINTR) {
            failure = std::string("waitpid: ") + std::strerror(errno);
            break;
        }
        if (SystemClock::monotonic() >= deadline) {
            failure = argv[0] + ": no answer within " + std::to_string(timeout.count()) + " ms";
            break;
        }
        ::poll(nullptr, 0, 10);
    }
    if (!failure.empty()) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return R::failure(failure);
    }
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return result;
}

}  // namespace relayguard
