// The relay client's delivery threads; see the header.
#include "delivery/scheduler.h"

#include <algorithm>
#include <chrono>

namespace relayguard {

Scheduler::Scheduler(Queue& queue, Deliverer& deliverer, std::uint32_t threads, const Clock& clock)
    : queue_(queue), deliverer_(deliverer), clock_(clock) {
    for (std::uint32_t i = 0; i < std::max<std::uint32_t>(threads, 1); ++i) workers_.emplace_back([this] { work(); });
    dispatcher_ = std::thread([this] { dispatch(); });
}

Scheduler::~Scheduler() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    dispatcher_.join();
    for (auto& w : workers_) w.join();
}

void Scheduler::submit(const std::string& id) {
    {
        std::lock_guard lock(mutex_);
        if (!in_flight_.insert(id).second) return;
        work_.push_back(id);
    }
    wake_.notify_all();
}

bool Scheduler::busy(const std::string& id) {
    std::lock_guard lock(mutex_);
    return in_flight_.count(id) > 0;
}

std::vector<std::string> due_messages(const std::vector<QueueEntry>& scanned, TimePoint now,
                                      const std::set<std::string>& in_flight) {
    std::vector<std::string> due;
    for (const auto& e : scanned) {
        if (e.next_attempt <= now && !in_flight.count(e.id)) due.push_back(e.id);
    }
    return due;
}

void Scheduler::dispatch() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        lock.unlock();
        queue_.pickup();  // what relayguard-sendmail dropped off: due now, found by the scan
        auto entries = queue_.scan();
        TimePoint now = clock_.now();
        lock.lock();
        for (auto& id : due_messages(entries, now, in_flight_)) {
            in_flight_.insert(id);
            work_.push_back(std::move(id));
        }
        if (!work_.empty()) wake_.notify_all();
        wake_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
    }
}

void Scheduler::work() {
    std::unique_lock lock(mutex_);
    while (true) {
        wake_.wait(lock, [this] { return stopping_ || !work_.empty(); });
        if (stopping_) return;
        std::string id = work_.front();
        work_.pop_front();
        lock.unlock();
        if (!deliverer_.attempt(queue_.dir(), id, clock_.now())) queue_.left();
        lock.lock();
        in_flight_.erase(id);
    }
}

}  // namespace relayguard
