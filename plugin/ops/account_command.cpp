// The compromised-account command; see the header.
#include "plugin/ops/account_command.h"

#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace relayguard {

namespace {

constexpr auto command_limit = std::chrono::seconds(60);
constexpr auto poll_interval = std::chrono::milliseconds(100);

void reap(pid_t pid, std::string program) {
    int status = 0;
    for (auto waited = std::chrono::milliseconds(0); waited < command_limit; waited += poll_interval) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) spdlog::info("compromised-account command {} done", program);
            else spdlog::warn("compromised-account command {} failed (status {})", program, status);
            return;
        }
        if (r < 0) return;
        std::this_thread::sleep_for(poll_interval);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    spdlog::warn("compromised-account command {} killed after {} s", program, command_limit.count());
}

}  // namespace

void run_account_command(const std::vector<std::string>& command, const std::string& user, const std::string& reason) {
    if (command.empty()) return;
    std::vector<std::string> args = command;
    args.push_back(user);
    args.push_back(reason);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    int err = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
    if (err != 0) {
        spdlog::error("compromised-account command {} cannot run: {}", command[0], std::strerror(err));
        return;
    }
    std::thread(reap, pid, command[0]).detach();
}

}  // namespace relayguard
