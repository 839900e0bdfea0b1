// The relay client's delivery threads and what feeds them: a dispatcher that
// scans the queue directory once a second for messages that are due, and
// `delivery.threads` workers that each attempt one message at a time. A
// message is never with two threads at once.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "delivery/deliverer.h"
#include "delivery/queue/queue.h"
#include "common/base/clock.h"

namespace relayguard {

// The messages of a scan that are due at `now` and with no thread yet, in
// the scan's order (oldest first: ids sort by arrival).
std::vector<std::string> due_messages(const std::vector<QueueEntry>& scanned, TimePoint now,
                                      const std::set<std::string>& in_flight);

class Scheduler {
public:
    // Starts the threads; `clock` says when a message is due.
    Scheduler(Queue& queue, Deliverer& deliverer, std::uint32_t threads, const Clock& clock);
    // Lets every attempt in hand end, then joins the threads.
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // A message just queued: due now, so it goes to the threads at once
    // instead of waiting for the next scan of the directory.
    void submit(const std::string& id);

    // Whether a delivery thread has the message now.
    bool busy(const std::string& id);

private:
    void dispatch();
    void work();

    Queue& queue_;
    Deliverer& deliverer_;
    const Clock& clock_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::deque<std::string> work_;
    std::set<std::string> in_flight_;
    std::vector<std::thread> workers_;
    std::thread dispatcher_;
};

}  // namespace relayguard
