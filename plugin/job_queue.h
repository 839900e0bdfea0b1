// A queue of jobs between threads: the policy server's event loop hands
// complete requests to its decision threads through one. The mutex is held
// only to move a job in or out, never while one is worked on.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

namespace relayguard {

template <class Job>
class JobQueue {
public:
    // Answers false, dropping the job, once the queue is closed.
    bool push(Job job) {
        {
            std::lock_guard lock(mutex_);
            if (closed_) return false;
            jobs_.push_back(std::move(job));
        }
        ready_.notify_one();
        return true;
    }

    // The next job, waiting for one; nothing once the queue is closed.
    std::optional<Job> pop() {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return closed_ || !jobs_.empty(); });
        if (closed_) return std::nullopt;
        Job job = std::move(jobs_.front());
        jobs_.pop_front();
        return job;
    }

    // Wakes every waiter; queued jobs are dropped, later pushes refused.
    void close() {
        std::deque<Job> dropped;
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
            dropped.swap(jobs_);
        }
        ready_.notify_all();
    }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Job> jobs_;
    bool closed_ = false;
};

}  // namespace relayguard
