// The queue directory: active/ holds one file per message (queue_file.h),
// tmp/ what is being written, corrupt/ what could not be read, incoming/
// what relayguard-sendmail dropped off, until the relay client picks it up. Opening it
// runs a recovery pass: half-written files in tmp/ are dropped (they were
// never acknowledged), unreadable ones moved aside, finished ones removed.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "delivery/queue/queue_file.h"

namespace relayguard {

struct QueueEntry {
    std::string id;
    TimePoint next_attempt;
};

class Queue {
public:
    // `now` ages the dot files in incoming/ that the recovery pass removes.
    static Result<std::unique_ptr<Queue>> open(const std::string& dir, TimePoint now);
    explicit Queue(std::string dir) : dir_(std::move(dir)) {}

    // Writes `message` durably; its id and arrival are set here when empty.
    Result<std::string> enqueue(QueuedMessage message, TimePoint now);
    Result<std::string> enqueue(const std::string& sender, const std::vector<std::string>& rcpts,
                                const std::string& content, TimePoint now);
    // Moves what relayguard-sendmail dropped into incoming/ into active/,
    // as the relay client's own files; answers their ids.
    std::vector<std::string> pickup();
    // Every message, with its next attempt time, oldest id first.
    std::vector<QueueEntry> scan();
    std::size_t size() const { return size_; }
    // A message left active/ (delivered, failed, deleted, moved aside).
    void left() {
        for (auto n = size_.load(); n > 0 && !size_.compare_exchange_weak(n, n - 1);) {
        }
    }
    const std::string& dir() const { return dir_; }
    // Bytes an unprivileged writer may still use on the queue's file system;
    // nullopt when statvfs fails (the caller then does not refuse on it).
    std::optional<std::uint64_t> free_bytes() const;

private:
    const std::string dir_;
    std::atomic<std::size_t> size_{0};
};

}  // namespace relayguard
