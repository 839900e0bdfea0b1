// hiredis, wrapped: see the header.
#include "common/redis/redis_connection.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>

#include "common/base/system_clock.h"

namespace relayguard {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
    // hiredis takes a zero timeout as "wait for ever"; never pass one.
    auto v = std::max<long long>(ms.count(), 1);
    return timeval{static_cast<time_t>(v / 1000), static_cast<suseconds_t>((v % 1000) * 1000)};
}

RedisValue copy_reply(const redisReply* r) {
    RedisValue v;
    switch (r->type) {
        case REDIS_REPLY_INTEGER: v.type = RedisValue::Type::integer; v.integer = r->integer; break;
        case REDIS_REPLY_STRING: v.type = RedisValue::Type::string; v.str.assign(r->str, r->len); break;
        case REDIS_REPLY_STATUS: v.type = RedisValue::Type::status; v.str.assign(r->str, r->len); break;
        case REDIS_REPLY_ERROR: v.type = RedisValue::Type::error; v.str.assign(r->str, r->len); break;
        case REDIS_REPLY_ARRAY:
            v.type = RedisValue::Type::array;
            v.elements.reserve(r->elements);
            for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(copy_reply(r->element[i]));
            break;
        default: v.type = RedisValue::Type::nil; break;
    }
    return v;
}

}  // namespace

std::optional<RedisEndpoint> RedisEndpoint::parse(const std::string& spec) {
    RedisEndpoint e;
    if (spec.rfind("unix:", 0) == 0) {
        e.unix_path = spec.substr(5);
        if (e.unix_path.empty() || e.unix_path[0] != '/') return std::nullopt;
        return e;
    }
    auto colon = spec.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) return std::nullopt;
    e.host = spec.substr(0, colon);
    if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
    std::string port = spec.substr(colon + 1);
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    e.port = std::stoi(port);
    if (e.port < 1 || e.port > 65535) return std::nullopt;
    return e;
}

std::string RedisEndpoint::to_string() const {
    if (!unix_path.empty()) return "unix:" + unix_path;
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::string RedisValue::error_code() const {
    if (type != Type::error) return "";
    return str.substr(0, str.find(' '));
}

void RedisConnection::FreeContext::operator()(redisContext* c) const { redisFree(c); }

RedisConnection::RedisConnection(RedisEndpoint where, redisContext* context)
    : where_(std::move(where)), context_(context) {}
RedisConnection::RedisConnection(RedisConnection&&) noexcept = default;
RedisConnection& RedisConnection::operator=(RedisConnection&&) noexcept = default;
RedisConnection::~RedisConnection() = default;

Result<RedisConnection> RedisConnection::open(const RedisEndpoint& where, std::chrono::milliseconds timeout,
                                              const std::string& username, const std::string& password) {
    redisContext* c = where.unix_path.empty() ? redisConnectWithTimeout(where.host.c_str(), where.port, to_timeval(timeout))
                                              : redisConnectUnixWithTimeout(where.unix_path.c_str(), to_timeval(timeout));
    if (c == nullptr) return Result<RedisConnection>::failure("out of memory");
    RedisConnection conn(where, c);
    if (c->err) return Result<RedisConnection>::failure(std::string("connect: ") + c->errstr);
    if (password.empty()) return conn;
    std::vector<std::string> auth{"AUTH"};
    if (!username.empty()) auth.push_back(username);
    auth.push_back(password);
    auto reply = conn.call(auth, SystemClock::monotonic() + timeout);
    // Only the server's words are reported: the command carries the password.
    if (!reply) return Result<RedisConnection>::failure("AUTH: " + reply.error());
    if (reply->is_error()) return Result<RedisConnection>::failure("AUTH refused: " + reply->str);
    return conn;
}

Result<std::vector<RedisValue>> RedisConnection::pipeline(const std::vector<std::vector<std::string>>& commands,
                                                          SteadyTime deadline) {
    using R = Result<std::vector<RedisValue>>;
    if (broken_) return R::failure("connection already failed");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SystemClock::monotonic());
    if (left.count() <= 0) return R::failure("timed out before sending");
    redisContext* c = context_.get();
    // Rounded down, so a call never waits past its deadline.
    auto timeout = left.count() >= 5 ? std::chrono::milliseconds(left.count() / 5 * 5) : left;
    if (timeout != timeout_set_) {
        if (redisSetTimeout(c, to_timeval(timeout)) != REDIS_OK) {
            broken_ = true;
            return R::failure("cannot set the socket timeout");
        }
        timeout_set_ = timeout;
    }
    for (const auto& cmd : commands) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : cmd) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        if (redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()) != REDIS_OK) {
            broken_ = true;
            return R::failure(std::string("send: ") + c->errstr);
        }
    }
    std::vector<RedisValue> replies;
    replies.reserve(commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
        void* raw = nullptr;
        if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
            broken_ = true;
            std::string why = c->errstr;
            if (c->err == REDIS_ERR_IO && (why.find("temporarily unavailable") != std::string::npos ||
                                           why.find("timed out") != std::string::npos)) {
                why = redis_no_reply;
            }
            return R::failure(why);
        }
        std::unique_ptr<redisReply, void (*)(void*)> reply(static_cast<redisReply*>(raw), freeReplyObject);
        replies.push_back(copy_reply(reply.get()));
    }
    return replies;
}

Result<RedisValue> RedisConnection::call(const std::vector<std::string>& command, SteadyTime deadline) {
    auto r = pipeline({command}, deadline);
    if (!r) return Result<RedisValue>::failure(r.error());
    return std::move(r->front());
}

Result<std::optional<RedisValue>> RedisConnection::next_push(std::chrono::milliseconds wait) {
    using R = Result<std::optional<RedisValue>>;
    if (broken_) return R::failure("connection already failed");
    redisContext* c = context_.get();
    // hiredis' own read gives up the whole context on a timeout: wait with
    // poll() instead, and hand hiredis only bytes that are there.
    auto take = [&]() -> R {
        void* raw = nullptr;
        if (redisGetReplyFromReader(c, &raw) != REDIS_OK) {
            broken_ = true;
            return R::failure(std::string("read: ") + c->errstr);
        }
        if (raw == nullptr) return std::optional<RedisValue>{};
        std::unique_ptr<redisReply, void (*)(void*)> reply(static_cast<redisReply*>(raw), freeReplyObject);
        return std::optional<RedisValue>{copy_reply(reply.get())};
    };
    auto buffered = take();
    if (!buffered || *buffered) return buffered;
    pollfd p{c->fd, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(std::max<long long>(wait.count(), 0)));
    if (ready == 0 || (ready < 0 && errno == EINTR)) return std::optional<RedisValue>{};
    if (ready < 0 || redisBufferRead(c) != REDIS_OK) {
        broken_ = true;
        return R::failure(std::string("read: ") + (c->err ? c->errstr : "poll failed"));
    }
    return take();
}

}  // namespace relayguard
