// Connection pool that batches concurrent commands; see the header.
//
// A caller queues its request and then either sends a batch itself (a
// connection is free, or one more may be opened) or sleeps on its own
// condition variable until a sender has its replies. Each request lives on
// its caller's stack: a sender only touches requests it took from the queue,
// and their callers cannot return before the sender marks them done, which
// it does with the lock held.
#include "common/redis/redis_pool.h"

#include <algorithm>

#include "common/base/system_clock.h"

namespace relayguard {

namespace {
constexpr std::chrono::milliseconds first_backoff{50};
constexpr std::chrono::milliseconds max_backoff{1000};
}  // namespace

struct RedisPool::Request {
    Request(const std::vector<std::vector<std::string>>* c, SteadyTime d) : commands(c), deadline(d) {}
    const std::vector<std::vector<std::string>>* commands;
    SteadyTime deadline;
    enum class State { queued, sending, done } state = State::queued;
    RedisExchange result;
    std::condition_variable wake;
};

RedisPool::RedisPool(RedisEndpoint where, std::size_t size, std::chrono::milliseconds connect_timeout,
                     RedisCredentials credentials)
    : where_(std::move(where)),
      size_(std::max<std::size_t>(size, 1)),
      connect_timeout_(connect_timeout),
      credentials_(std::move(credentials)),
      backoff_(first_backoff) {}

bool RedisPool::can_start() const { return !idle_.empty() || open_ < size_; }

void RedisPool::wake_next() {
    if (!queue_.empty() && can_start()) queue_.front()->wake.notify_one();
}

RedisExchange RedisPool::exchange(const std::vector<std::vector<std::string>>& commands, SteadyTime deadline) {
    Request me(&commands, deadline);
    std::unique_lock lock(mutex_);
    queue_.push_back(&me);
    auto give_up = [&](std::string why) {
        queue_.erase(std::find(queue_.begin(), queue_.end(), &me));
        me.result.error = std::move(why);
        wake_next();
        return std::move(me.result);
    };
    for (;;) {
        if (me.state == Request::State::done) return std::move(me.result);
        if (me.state == Request::State::queued && !idle_.empty()) {
            RedisConnection conn = std::move(idle_.front());
            idle_.pop_front();
            send_batch(lock, std::move(conn), generation_, me);
            continue;
        }
        if (me.state == Request::State::queued && open_ < size_) {
            auto now = SystemClock::monotonic();
            if (now < retry_at_) {
                return give_up(last_error_ + " (next attempt in " +
                               std::to_string(std::chrono::ceil<std::chrono::milliseconds>(retry_at_ - now).count()) +
                               " ms)");
            }
            ++open_;
            std::uint64_t generation = generation_;
            lock.unlock();
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
            auto conn = RedisConnection::open(where_, std::min(connect_timeout_, left), credentials_.username,
                                              credentials_.password);
            lock.lock();
            if (!conn) {
                --open_;
                last_error_ = conn.error();
                retry_at_ = SystemClock::monotonic() + backoff_;
                backoff_ = std::min(backoff_ * 2, max_backoff);
                // Another sender may have taken this request meanwhile.
                if (me.state == Request::State::queued) return give_up(last_error_);
                wake_next();
                continue;
            }
            backoff_ = first_backoff;
            retry_at_ = {};
            if (me.state != Request::State::queued || generation != generation_) {
                // Sent by another thread while this one connected, or the
                // pool was dropped meanwhile: keep or close the connection.
                if (generation == generation_) {
                    idle_.push_back(std::move(*conn));
                } else {
                    --open_;
                }
                wake_next();
                continue;
            }
            send_batch(lock, std::move(*conn), generation, me);
            continue;
        }
        if (me.state == Request::State::queued) {
            if (me.wake.wait_until(lock, deadline) == std::cv_status::timeout && me.state == Request::State::queued) {
                return give_up("all " + std::to_string(size_) + " connections busy");
            }
        } else {
            // Being sent by another thread, whose read ends by the earliest
            // deadline in its batch: no later than this one's.
            me.wake.wait(lock);
        }
    }
}

void RedisPool::send_batch(std::unique_lock<std::mutex>& lock, RedisConnection conn, std::uint64_t generation,
                           Request& mine) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), &mine));
    std::vector<Request*> batch{&mine};
    std::size_t count = mine.commands->size();
    SteadyTime deadline = mine.deadline;
    while (!queue_.empty() && count + queue_.front()->commands->size() <= max_batch) {
        Request* next = queue_.front();
        queue_.pop_front();
        batch.push_back(next);
        count += next->commands->size();
        deadline = std::min(deadline, next->deadline);
    }
    for (Request* r : batch) r->state = Request::State::sending;
    wake_next();  // what is left may go on another connection
    lock.unlock();

    // The commands belong to callers that stay blocked until they are done.
    std::vector<std::vector<std::string>> all;
    all.reserve(count);
    for (Request* r : batch) all.insert(all.end(), r->commands->begin(), r->commands->end());
    auto replies = conn.pipeline(all, deadline);

    lock.lock();
    std::size_t at = 0;
    for (Request* r : batch) {
        r->result.sent = true;
        if (replies) {
            auto first = replies->begin() + static_cast<std::ptrdiff_t>(at);
            auto n = static_cast<std::ptrdiff_t>(r->commands->size());
            r->result.replies.assign(std::make_move_iterator(first), std::make_move_iterator(first + n));
            at += r->commands->size();
        } else {
            r->result.error = replies.error();
        }
        r->state = Request::State::done;
        // Notified with the lock held: its caller cannot return, and take
        // the condition variable with it, until this thread lets go.
        if (r != &mine) r->wake.notify_one();
    }
    if (!replies || conn.broken()) {
        // The idle connections are suspect too: a restarted server closed
        // them all. Those in use are closed when they come back.
        --open_;
        ++generation_;
        open_ -= idle_.size();
        idle_.clear();
    } else if (generation == generation_) {
        idle_.push_back(std::move(conn));
    } else {
        --open_;
    }
    wake_next();
}

}  // namespace relayguard
