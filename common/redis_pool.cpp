// Connection pool with deadlines and back-off; see the header.
#include "common/redis_pool.h"

#include <algorithm>

namespace relayguard {

namespace {
constexpr std::chrono::milliseconds first_backoff{50};
constexpr std::chrono::milliseconds max_backoff{1000};
}  // namespace

RedisPool::Lease::Lease(RedisPool* pool, RedisConnection conn, std::uint64_t generation)
    : pool_(pool), conn_(std::move(conn)), generation_(generation) {}

RedisPool::Lease::Lease(Lease&& o) noexcept
    : pool_(std::exchange(o.pool_, nullptr)), conn_(std::move(o.conn_)), generation_(o.generation_) {
    o.conn_.reset();
}

RedisPool::Lease::~Lease() {
    if (pool_) pool_->give_back(conn_, generation_);
}

RedisPool::RedisPool(RedisEndpoint where, std::size_t size, std::chrono::milliseconds connect_timeout,
                     RedisCredentials credentials)
    : where_(std::move(where)),
      size_(std::max<std::size_t>(size, 1)),
      connect_timeout_(connect_timeout),
      credentials_(std::move(credentials)),
      backoff_(first_backoff) {}

Result<RedisPool::Lease> RedisPool::acquire(SteadyTime deadline) {
    using R = Result<Lease>;
    std::unique_lock lock(mutex_);
    while (idle_.empty() && open_ >= size_) {
        if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= size_) {
            return R::failure(where_.to_string() + ": all " + std::to_string(size_) + " connections busy");
        }
    }
    if (!idle_.empty()) {
        RedisConnection conn = std::move(idle_.front());
        idle_.pop_front();
        return Lease(this, std::move(conn), generation_);
    }
    auto now = std::chrono::steady_clock::now();
    if (now < retry_at_) {
        return R::failure(where_.to_string() + ": " + last_error_ + " (next attempt in " +
                          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now).count()) + " ms)");
    }
    ++open_;
    std::uint64_t generation = generation_;
    lock.unlock();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    auto conn = RedisConnection::open(where_, std::min(connect_timeout_, left), credentials_.username, credentials_.password);
    lock.lock();
    if (!conn) {
        --open_;
        last_error_ = conn.error();
        retry_at_ = std::chrono::steady_clock::now() + backoff_;
        backoff_ = std::min(backoff_ * 2, max_backoff);
        freed_.notify_one();
        return R::failure(where_.to_string() + ": " + last_error_);
    }
    backoff_ = first_backoff;
    retry_at_ = {};
    return Lease(this, std::move(*conn), generation);
}

void RedisPool::give_back(std::optional<RedisConnection>& conn, std::uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (conn && !conn->broken() && generation == generation_) {
        idle_.push_back(std::move(*conn));
    } else {
        --open_;
    }
    conn.reset();
    freed_.notify_one();
}

void RedisPool::discard_all() {
    std::lock_guard lock(mutex_);
    ++generation_;
    open_ -= idle_.size();
    idle_.clear();
    freed_.notify_all();
}

}  // namespace relayguard
