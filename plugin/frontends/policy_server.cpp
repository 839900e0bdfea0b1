// The policy delegation server: serving threads that all wait on one epoll
// set; see the header for why.
//
// Life of a request: every connection is armed EPOLLONESHOT, so epoll wakes
// exactly one serving thread when it is readable and no other thread gets it
// until it is armed again. That thread marks it busy, reads what is there,
// decides each complete request in order and sends each answer, then files
// the connection's next timer and arms it again: for input, or for output
// when the socket did not take the whole answer. So a connection has one
// request in progress at a time and its answers go out in order; what a
// pipelining client sends meanwhile waits in the kernel.
//
// Why not one loop thread handing requests to decision threads: that costs
// two wake-ups per request (the loop's and the decision thread's), and on two
// cores it cut throughput to well under half of a thread per connection.
// Here the thread epoll wakes is the one that decides.
//
// Timers: each connection has one deadline, set by its phase (idle,
// receiving, replying). A timerfd in the same set is kept at the soonest;
// the thread it wakes closes the connections past theirs. A busy connection
// is never closed under its thread: it is marked overdue, and its thread
// closes it when done unless it has moved to another phase meanwhile. A
// connection is closed only under the lock and after it is taken out of the
// table, so no thread can be handed a descriptor that was closed and reused.
#include "plugin/frontends/policy_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <system_error>

#include "common/base/system_clock.h"
#include "common/daemon/logging.h"
#include "common/base/units.h"

namespace relayguard {
namespace {

// epoll's tags for the descriptors that are not connections; connection
// ids count up from 1 and never come near these.
constexpr std::uint64_t listener_tag = ~std::uint64_t{0};
constexpr std::uint64_t stop_tag = listener_tag - 1;
constexpr std::uint64_t timer_tag = listener_tag - 2;

// Out of file descriptors (or another accept failure): how long the listener
// rests before the next try. Clients wait in the listen queue meanwhile.
constexpr std::chrono::milliseconds accept_retry_interval{100};
// Connections accepted per wake-up, so a flood of connects cannot hold a
// thread that the connected clients need.
constexpr int accept_burst = 64;

// Where a connection is in its exchange with the client; each phase has its own timer.
enum class Phase {
    idle,       // nothing buffered: listen.policy_idle_timeout
    receiving,  // part of a request buffered: listen.policy_read_timeout from its first bytes
    replying,   // the socket has not taken the whole answer: listen.policy_read_timeout
};

std::string error_text(int error) { return std::generic_category().message(error); }

std::string describe_peer(const sockaddr_storage& peer) {
    std::array<char, INET6_ADDRSTRLEN> text{};
    if (peer.ss_family == AF_INET) {
        const auto& in = reinterpret_cast<const sockaddr_in&>(peer);
        ::inet_ntop(AF_INET, &in.sin_addr, text.data(), text.size());
        return fmt::format("{}:{}", text.data(), ntohs(in.sin_port));
    }
    if (peer.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(peer);
        ::inet_ntop(AF_INET6, &in6.sin6_addr, text.data(), text.size());
        return fmt::format("[{}]:{}", text.data(), ntohs(in6.sin6_port));
    }
    return "a unix socket client";
}

bool set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Sends what the socket takes now; `data` keeps the rest. Answers false when
// the client is gone.
bool send_now(int socket, std::string& data) {
    while (!data.empty()) {
        ssize_t n = ::send(socket, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.erase(0, static_cast<std::size_t>(n));
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        }
    }
    return true;
}

bool epoll_watch(int epoll, int op, int fd, std::uint32_t events, std::uint64_t tag) {
    epoll_event event{};
    event.events = events;
    event.data.u64 = tag;
    return ::epoll_ctl(epoll, op, fd, &event) == 0;
}

}  // namespace

struct PolicyServer::Connection {
    Connection(std::uint64_t connection_id, UniqueFd socket, std::string peer_name, std::size_t max_request)
        : id(connection_id), fd(std::move(socket)), peer(std::move(peer_name)), reader(max_request) {
        state.id = id;
    }

    Phase current_phase() const {
        if (!output.empty()) return Phase::replying;
        if (reader.has_partial()) return Phase::receiving;
        return Phase::idle;
    }

    // Touched only by the thread that has the connection (it is armed one-shot).
    const std::uint64_t id;
    UniqueFd fd;
    const std::string peer;  // for the log
    PolicyRequestReader reader;
    PolicyConnection state;
    bool input_closed = false;  // the client shut its side: answer what is complete, then close
    std::string output;         // answer bytes the socket has not taken yet

    // Under PolicyServer::mutex_.
    bool busy = false;     // a thread has it: its timer must not close it
    bool overdue = false;  // its deadline passed while busy
    Phase phase = Phase::idle;
    SteadyTime deadline = SteadyTime::max();
};

namespace {

void log_timeout(std::uint64_t id, const std::string& peer, Phase phase, const ListenSettings& settings) {
    switch (phase) {
        case Phase::idle:
            spdlog::info("policy: connection {} from {} closed: idle for {} (listen.policy_idle_timeout)", id, peer,
                         format_duration(settings.policy_idle_timeout));
            return;
        case Phase::receiving:
            spdlog::warn("policy: connection {} from {} closed: request not complete after {} "
                         "(listen.policy_read_timeout)",
                         id, peer, format_duration(settings.policy_read_timeout));
            return;
        case Phase::replying:
            spdlog::warn("policy: connection {} from {} closed: answer not taken within {} (listen.policy_read_timeout)",
                         id, peer, format_duration(settings.policy_read_timeout));
            return;
    }
}

}  // namespace

PolicyServer::PolicyServer(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings)
    : decider_(engine, ledger, settings.stage_timeout), settings_(settings) {}

PolicyServer::~PolicyServer() { stop(); }

std::string PolicyServer::action_for(const Decision& d) {
    switch (d.verdict) {
        case Verdict::proceed: return "action=DUNNO";
        case Verdict::permit: return "action=OK";
        case Verdict::discard: return "action=DISCARD " + d.reply.text;
        case Verdict::hold: return "action=HOLD " + d.reply.text;
        case Verdict::reject:
        case Verdict::tempfail:
        case Verdict::close:
            // Postfix passes "NNN X.Y.Z text" through; 421 also disconnects.
            return "action=" + d.reply.to_string();
    }
    return "action=DUNNO";
}

void PolicyServer::start(UniqueFd listener) {
    listener_ = std::move(listener);
    epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    stop_event_ = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    timer_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    // The listener too is non-blocking: a client that resets between epoll's
    // report and accept must not block a thread. The stop event alone is
    // level-triggered and never reset, so it wakes every thread.
    bool ready = epoll_ && stop_event_ && timer_ && set_nonblocking(listener_.get()) &&
                 epoll_watch(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), EPOLLIN | EPOLLONESHOT, listener_tag) &&
                 epoll_watch(epoll_.get(), EPOLL_CTL_ADD, timer_.get(), EPOLLIN | EPOLLONESHOT, timer_tag) &&
                 epoll_watch(epoll_.get(), EPOLL_CTL_ADD, stop_event_.get(), EPOLLIN, stop_tag);
    if (!ready) throw std::system_error(errno, std::generic_category(), "policy: cannot set up the event loop");
    for (std::uint32_t i = 0; i < settings_.workers; ++i) threads_.emplace_back([this] { run(); });
}

void PolicyServer::stop() {
    if (stopping_.exchange(true)) return;
    if (stop_event_) {
        std::uint64_t one = 1;
        // Fails only when the counter is saturated, and then it is set anyway.
        [[maybe_unused]] auto written = ::write(stop_event_.get(), &one, sizeof one);
    }
    // A thread in the middle of a request answers it first.
    for (auto& t : threads_) t.join();
    threads_.clear();
    connections_.clear();
    deadlines_.clear();
    listener_.reset();
}

void PolicyServer::run() {
    epoll_event event{};
    while (true) {
        // One event at a time: a thread that took several would leave the
        // rest waiting behind its decision while other threads sit idle.
        int n = ::epoll_wait(epoll_.get(), &event, 1, -1);
        if (stopping_) return;
        if (n < 0) {
            if (errno == EINTR) continue;
            spdlog::critical("policy: epoll_wait failed: {}; a serving thread stops", error_text(errno));
            return;
        }
        if (n == 0) continue;
        std::uint64_t tag = event.data.u64;
        if (tag == listener_tag) {
            accept_connections();
        } else if (tag == timer_tag) {
            on_timer();
        } else if (tag != stop_tag) {
            serve(tag, event.events);
        }
    }
}

void PolicyServer::serve(std::uint64_t id, std::uint32_t events) {
    Connection* c = nullptr;
    {
        std::lock_guard lock(mutex_);
        auto it = connections_.find(id);
        if (it == connections_.end()) return;  // its timer closed it after epoll reported it
        c = it->second.get();
        c->busy = true;
    }
    // An error, or hung up both ways: nobody is left to read an answer.
    bool open = (events & (EPOLLERR | EPOLLHUP)) == 0;
    if (!open) spdlog::debug("policy: connection {} hung up", id);
    if (open && (events & EPOLLOUT) != 0) open = write_output(*c);
    if (open && (events & EPOLLIN) != 0) open = read_input(*c);
    bool answered = false;
    if (open) open = answer_requests(*c, answered);
    if (open && c->output.empty() && c->input_closed) {
        spdlog::debug("policy: connection {} closed by the client", id);
        open = false;
    }
    release(*c, open, answered);
}

// Decides every complete request buffered, in order, each answer sent before
// the next request is taken; stops at one the socket has not taken whole.
// Answers false when the connection must be closed: a malformed request, a
// failed decision, or a client that is gone.
bool PolicyServer::answer_requests(Connection& c, bool& answered) {
    while (c.output.empty()) {
        std::string error;
        auto request = c.reader.next(error);
        if (!error.empty()) {
            spdlog::warn("policy: connection {} closed: malformed request: {}", c.id, error);
            return false;
        }
        if (!request) return true;
        try {
            Decision d = decider_.decide(c.state, *request, SystemClock::monotonic());
            c.output = action_for(d) + "\n\n";
        } catch (const std::exception& e) {
            // Postfix answers its client 4xx for a policy service that closes.
            spdlog::error("policy: connection {}: the decision failed: {}; closing the connection", c.id, e.what());
            return false;
        }
        answered = true;
        if (!write_output(c)) return false;
    }
    return true;
}

// Answers false when the connection broke.
bool PolicyServer::read_input(Connection& c) {
    std::array<char, 16 * 1024> buffer;
    ssize_t n = ::recv(c.fd.get(), buffer.data(), buffer.size(), 0);
    if (n > 0) {
        c.reader.append(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
        return true;
    }
    if (n == 0) {
        c.input_closed = true;
        return true;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
    spdlog::debug("policy: connection {} closed: {}", c.id, error_text(errno));
    return false;
}

// Sends what the socket takes of the answer; the rest waits for EPOLLOUT.
// Answers false when the client is gone.
bool PolicyServer::write_output(Connection& c) {
    if (send_now(c.fd.get(), c.output)) return true;
    spdlog::debug("policy: connection {} closed: cannot answer: {}", c.id, error_text(errno));
    return false;
}

// Hands a connection back once its thread is done with it: closes it, or
// files its timer and arms it again. Both under the lock, so its timer cannot
// close it in between. A new phase starts its own timer, and so does each
// answer; otherwise the timer keeps running, so a request must be complete
// within the read timeout of its first bytes however slowly it trickles in.
void PolicyServer::release(Connection& c, bool open, bool answered) {
    std::unique_ptr<Connection> closing;  // closed once the lock is released
    std::lock_guard lock(mutex_);
    c.busy = false;
    Phase phase = c.current_phase();
    bool restart = answered || phase != c.phase;
    if (open && c.overdue && !restart) {
        log_timeout(c.id, c.peer, c.phase, settings_);
        open = false;
    }
    if (!open || stopping_) {
        closing = take_locked(c.id);
        return;
    }
    c.overdue = false;
    if (restart) {
        c.phase = phase;
        auto timeout = phase == Phase::idle ? settings_.policy_idle_timeout : settings_.policy_read_timeout;
        schedule_locked(c, SystemClock::monotonic() + timeout);
    }
    rearm(c.fd.get(), (c.output.empty() ? EPOLLIN : EPOLLOUT) | EPOLLONESHOT, c.id);
}

void PolicyServer::rearm(int fd, std::uint32_t events, std::uint64_t tag) const {
    // Fails only for a descriptor that is not in the set, which the lock and
    // the one-shot arming rule out; its timer would close it then.
    if (!epoll_watch(epoll_.get(), EPOLL_CTL_MOD, fd, events, tag)) {
        spdlog::error("policy: cannot watch descriptor {}: {}", fd, error_text(errno));
    }
}

void PolicyServer::accept_connections() {
    for (int i = 0; i < accept_burst; ++i) {
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int error = errno;
            if (error == EAGAIN || error == EWOULDBLOCK) {
                end_accept_failures();
                break;
            }
            // That client gave up before we took it; the next one may be fine.
            if (error == ECONNABORTED || error == EINTR || error == EPROTO) continue;
            return pause_accepting(error);
        }
        add_connection(UniqueFd(fd), describe_peer(peer));
    }
    rearm(listener_.get(), EPOLLIN | EPOLLONESHOT, listener_tag);
}

// EMFILE, ENFILE and the like: retrying at once would spin on a listener
// that stays readable, so it rests a moment (the timer arms it again); one
// warning per episode.
void PolicyServer::pause_accepting(int error) {
    if (!accept_failing_) {
        spdlog::warn("policy: cannot accept connections: {}; new clients wait in the listen queue, retrying every {} ms",
                     error_text(error), accept_retry_interval.count());
        accept_failing_ = true;
    }
    std::lock_guard lock(mutex_);
    accept_paused_until_ = SystemClock::monotonic() + accept_retry_interval;
    if (*accept_paused_until_ < timer_set_for_) arm_timer_locked(*accept_paused_until_);
}

// An episode ends when no client is left waiting in the listen queue, not at
// the first accept that works again: under a flood that frees a descriptor
// now and then, that would be a warning every 100 ms.
void PolicyServer::end_accept_failures() {
    if (!accept_failing_) return;
    spdlog::info("policy: accepting connections again; no client is waiting");
    accept_failing_ = false;
}

void PolicyServer::add_connection(UniqueFd fd, std::string peer) {
    std::uint64_t id = ++last_id_;
    auto conn = std::make_unique<Connection>(id, std::move(fd), std::move(peer), settings_.policy_max_request);
    spdlog::debug("policy: connection {} from {}", id, conn->peer);
    Connection& c = *conn;
    std::lock_guard lock(mutex_);
    // In the table before it is in the set: its first event must find it.
    connections_.emplace(id, std::move(conn));
    if (!epoll_watch(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), EPOLLIN | EPOLLONESHOT, id)) {
        spdlog::error("policy: connection {} from {} dropped: epoll: {}", id, c.peer, error_text(errno));
        connections_.erase(id);
        return;
    }
    schedule_locked(c, SystemClock::monotonic() + settings_.policy_idle_timeout);
}

// Closes the connections past their deadline, ends an accept pause that is
// over, and sets the timer for what comes next.
void PolicyServer::on_timer() {
    std::uint64_t expirations = 0;
    // Fails only when it has not expired since the last read: nothing to reset then.
    [[maybe_unused]] auto got = ::read(timer_.get(), &expirations, sizeof expirations);
    auto now = SystemClock::monotonic();
    Closing closing;  // closed once the lock is released
    bool resume_accepting = false;
    {
        std::lock_guard lock(mutex_);
        timer_set_for_ = SteadyTime::max();
        while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
            Connection& c = *connections_.at(deadlines_.begin()->second);
            if (c.busy) {
                deadlines_.erase(deadlines_.begin());
                c.deadline = SteadyTime::max();
                c.overdue = true;
                continue;
            }
            log_timeout(c.id, c.peer, c.phase, settings_);
            closing.push_back(take_locked(c.id));
        }
        if (accept_paused_until_ && *accept_paused_until_ <= now) {
            accept_paused_until_.reset();
            resume_accepting = true;
        }
        std::optional<SteadyTime> next;
        if (!deadlines_.empty()) next = deadlines_.begin()->first;
        if (accept_paused_until_ && (!next || *accept_paused_until_ < *next)) next = accept_paused_until_;
        if (next) arm_timer_locked(*next);
        rearm(timer_.get(), EPOLLIN | EPOLLONESHOT, timer_tag);
    }
    if (resume_accepting) rearm(listener_.get(), EPOLLIN | EPOLLONESHOT, listener_tag);
}

// Files a connection's deadline; under the lock.
void PolicyServer::schedule_locked(Connection& c, SteadyTime deadline) {
    deadlines_.erase({c.deadline, c.id});
    c.deadline = deadline;
    deadlines_.emplace(deadline, c.id);
    if (deadline < timer_set_for_) arm_timer_locked(deadline);
}

// Sets the timerfd to fire at `when` (steady_clock is CLOCK_MONOTONIC); under the lock.
void PolicyServer::arm_timer_locked(SteadyTime when) {
    auto since = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
    since = std::max<decltype(since)>(since, 1);  // all zeros would disarm it
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(since / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(since % 1'000'000'000);
    if (::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
        spdlog::error("policy: cannot set the connection timer: {}", error_text(errno));
        return;
    }
    timer_set_for_ = when;
}

// Takes a connection out of the table and the timers; under the lock. The
// caller destroys it after releasing the lock, which closes the socket and
// so takes it out of the epoll set.
std::unique_ptr<PolicyServer::Connection> PolicyServer::take_locked(std::uint64_t id) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return nullptr;
    std::unique_ptr<Connection> c = std::move(it->second);
    connections_.erase(it);
    deadlines_.erase({c->deadline, id});
    return c;
}

}  // namespace relayguard
