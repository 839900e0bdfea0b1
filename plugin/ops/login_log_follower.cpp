// Log follower; see the header.
#include "plugin/ops/login_log_follower.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>

namespace relayguard {

namespace {
// How many bytes at each end of what was read identify the file.
constexpr std::size_t fingerprint = 256;
}  // namespace

LoginLogFollower::LoginLogFollower(std::string path, std::vector<LoginPattern> patterns, OnLogin on_login)
    : path_(std::move(path)), patterns_(std::move(patterns)), on_login_(std::move(on_login)) {}

LoginLogFollower::~LoginLogFollower() { stop(); }

void LoginLogFollower::start(std::chrono::milliseconds interval) {
    poll_once();  // position at the end now, so nothing logged before start counts
    thread_ = std::thread([this, interval] {
        std::unique_lock lock(mutex_);
        while (!wake_.wait_for(lock, interval, [this] { return stopping_; })) {
            lock.unlock();
            poll_once();
            lock.lock();
        }
    });
}

void LoginLogFollower::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (!thread_.joinable()) return;
    thread_.join();
    if (auto skipped = long_lines_skipped_.load(); skipped > 1) {
        spdlog::info("pop-before-smtp: skipped {} lines of more than {} bytes in {}", skipped, max_line_bytes, path_);
    }
}

bool LoginLogFollower::open_file(bool from_start) {
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return false;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return false;
    fd_ = std::move(fd);
    inode_ = st.st_ino;
    device_ = st.st_dev;
    offset_ = from_start ? 0 : st.st_size;
    partial_.clear();
    skipping_long_line_ = false;
    last_read_.clear();
    head_.clear();
    if (offset_ > 0) {
        last_read_.resize(static_cast<std::size_t>(std::min<off_t>(offset_, fingerprint)));
        head_.resize(last_read_.size());
        if (::pread(fd_.get(), last_read_.data(), last_read_.size(), offset_ - static_cast<off_t>(last_read_.size())) !=
                static_cast<ssize_t>(last_read_.size()) ||
            ::pread(fd_.get(), head_.data(), head_.size(), 0) != static_cast<ssize_t>(head_.size())) {
            last_read_.clear();
            head_.clear();
        }
    }
    return true;
}

void LoginLogFollower::poll_once() {
    if (!fd_) {
        // The first time, skip what is there; a file that appears later (after
        // a rotation while it was missing) is new, and read whole.
        if (!open_file(started_)) {
            started_ = true;
            return;
        }
        started_ = true;
    }
    read_new();
    struct stat now {};
    if (::stat(path_.c_str(), &now) != 0) {
        fd_.reset();  // removed: wait for it to come back
        return;
    }
    if (now.st_ino != inode_ || now.st_dev != device_) {
        // Renamed away: what was written to the old file before the switch
        // was read just above; go on with the new one from its start.
        if (open_file(true)) read_new();
    }
}

namespace {

bool same_bytes(int fd, const std::string& expected, off_t at) {
    if (expected.empty()) return true;
    std::string now(expected.size(), '\0');
    return ::pread(fd, now.data(), now.size(), at) == static_cast<ssize_t>(now.size()) && now == expected;
}

}  // namespace

// Truncated in place (copytruncate) since the last read: the file is
// shorter, or, when it has already grown past where we were, its first bytes
// or the ones before that point are no longer the ones we read.
bool LoginLogFollower::rewritten(off_t size) {
    if (size < offset_) return true;
    if (!same_bytes(fd_.get(), head_, 0)) return true;
    return !same_bytes(fd_.get(), last_read_, offset_ - static_cast<off_t>(last_read_.size()));
}

void LoginLogFollower::read_new() {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return;
    if (rewritten(st.st_size)) {
        offset_ = 0;
        partial_.clear();
        skipping_long_line_ = false;
        last_read_.clear();
        head_.clear();
    }
    char buf[8192];
    while (true) {
        ssize_t n = ::pread(fd_.get(), buf, sizeof buf, offset_);
        if (n <= 0) break;
        offset_ += n;
        last_read_.append(buf, static_cast<std::size_t>(n));
        if (last_read_.size() > fingerprint) last_read_.erase(0, last_read_.size() - fingerprint);
        if (head_.size() < fingerprint) {
            head_.resize(static_cast<std::size_t>(std::min<off_t>(offset_, fingerprint)));
            if (::pread(fd_.get(), head_.data(), head_.size(), 0) != static_cast<ssize_t>(head_.size())) head_.clear();
        }
        // Lines are cut here; partial_ never holds more than one line of at
        // most max_line_bytes, however long the line in the file is.
        std::string_view chunk(buf, static_cast<std::size_t>(n));
        while (!chunk.empty()) {
            std::size_t newline = chunk.find('\n');
            bool line_ends = newline != std::string_view::npos;
            std::string_view piece = chunk.substr(0, newline);
            if (skipping_long_line_) {
                skipping_long_line_ = !line_ends;
            } else if (partial_.size() + piece.size() > max_line_bytes) {
                partial_.clear();
                skip_long_line();
                skipping_long_line_ = !line_ends;
            } else {
                partial_.append(piece);
                if (line_ends) {
                    take(partial_);
                    partial_.clear();
                }
            }
            if (!line_ends) break;
            chunk.remove_prefix(newline + 1);
        }
    }
}

void LoginLogFollower::skip_long_line() {
    if (long_lines_skipped_.fetch_add(1) == 0) {
        spdlog::warn("pop-before-smtp: skipped a line of more than {} bytes in {}: no login line is that long "
                     "(further ones are counted, not logged)",
                     max_line_bytes, path_);
    }
}

void LoginLogFollower::take(std::string_view text) {
    auto line = parse_log_line(text);
    if (!line) return;
    for (const auto& p : patterns_) {
        if (auto seen = p.match(*line)) {
            on_login_(*seen);
            return;
        }
    }
}

}  // namespace relayguard
