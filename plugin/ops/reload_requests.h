// Reloads asked for by SIGHUP, run one at a time on a thread of their own,
// so the thread that takes signals never waits on a reload; requests that
// arrive during a reload are folded into one more.
#pragma once

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/base/result.h"

namespace relayguard {

class ReloadRequests {
public:
    explicit ReloadRequests(std::function<Status()> reload)
        : reload_(std::move(reload)), thread_([this] { run(); }) {}
    ReloadRequests(const ReloadRequests&) = delete;
    ReloadRequests& operator=(const ReloadRequests&) = delete;
    ~ReloadRequests() { stop(); }

    void request() {
        {
            std::lock_guard lock(mutex_);
            pending_ = true;
        }
        wake_.notify_one();
    }

    void stop() {
        {
            std::lock_guard lock(mutex_);
            quit_ = true;
        }
        wake_.notify_one();
        if (thread_.joinable()) thread_.join();
    }

private:
    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [this] { return pending_ || quit_; });
            if (quit_) return;
            pending_ = false;
            lock.unlock();
            spdlog::info("received SIGHUP: reading the configuration again");
            reload_();
            lock.lock();
        }
    }

    std::function<Status()> reload_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool pending_ = false;
    bool quit_ = false;
    std::thread thread_;  // last: it starts once the rest exists
};

}  // namespace relayguard
