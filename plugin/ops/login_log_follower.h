// Follows a POP3/IMAP server's log file, as `tail -F` does, for servers that
// cannot run a login hook: every line matching a login pattern opens a relay
// window. It survives rotation by rename (the old file is read to its end,
// then the new one from its start) and by truncation (copytruncate), and
// starts at the end of the file: logins from before the daemon started open
// nothing. A line longer than max_line_bytes is skipped whole (the first one
// is logged, the rest counted): no login line is that long, and neither the
// buffer nor the match may grow with what a client can make a server log.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "common/base/unique_fd.h"
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
    // Lines skipped for their length since the start.
    std::uint64_t long_lines_skipped() const { return long_lines_skipped_.load(); }

    // rsyslog's default maximum message size; Dovecot cuts a user name at 80
    // bytes, so its login lines stay far below.
    static constexpr std::size_t max_line_bytes = 8 * 1024;

private:
    bool open_file(bool from_start);
    bool rewritten(off_t size);
    void read_new();
    void take(std::string_view line);
    void skip_long_line();

    const std::string path_;
    const std::vector<LoginPattern> patterns_;
    const OnLogin on_login_;
    UniqueFd fd_;
    ino_t inode_ = 0;
    dev_t device_ = 0;
    off_t offset_ = 0;
    bool started_ = false;
    std::string partial_;
    // In the middle of a line already longer than max_line_bytes: the rest of
    // it, up to its newline, is dropped too, never read as a line of its own.
    bool skipping_long_line_ = false;
    std::atomic<std::uint64_t> long_lines_skipped_{0};
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
