// Follows a POP3/IMAP server's log file, as `tail -F` does, for servers that
// cannot run a login hook: every line matching a login pattern opens a relay
// window. It survives rotation by rename (the old file is read to its end,
// then the new one from its start) and by truncation (copytruncate), and
// starts at the end of the file: logins from before the daemon started open
// nothing.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "policy/login_pattern.h"

namespace relayguard {

class LoginLogFollower {
public:
    using OnLogin = std::function<void(const LoginSeen&)>;
    LoginLogFollower(std::string path, std::vector<LoginPattern> patterns, OnLogin on_login);
    ~LoginLogFollower();
    LoginLogFollower(const LoginLogFollower&) = delete;
    LoginLogFollower& operator=(const LoginLogFollower&) = delete;

    // Polls every `interval` on a thread of its own.
    void start(std::chrono::milliseconds interval);
    void stop();
    // One round: reads what was added since the last, follows a rotation.
    void poll_once();

private:
    bool open_file(bool from_start);
    bool rewritten(off_t size);
    void read_new();
    void take(const std::string& line);

    const std::string path_;
    const std::vector<LoginPattern> patterns_;
    const OnLogin on_login_;
    UniqueFd fd_;
    ino_t inode_ = 0;
    dev_t device_ = 0;
    off_t offset_ = 0;
    bool started_ = false;
    std::string partial_;
    // The file's first bytes and the bytes just before offset_, to notice a
    // rewrite: log lines repeat, so both ends are compared.
    std::string head_;
    std::string last_read_;

    std::mutex mutex_;
    bool stopping_ = false;
    std::condition_variable wake_;
    std::thread thread_;
};

}  // namespace relayguard
