// The policy delegation server: one epoll event loop and a fixed pool of
// decision threads; see the header for why.
//
// Life of a request: the loop reads bytes into the connection's reader; once
// a request is complete it moves the request and the connection's
// PolicyConnection state into the job queue and stops reading that socket; a
// decision thread decides it and queues the state and the reply back; the
// loop writes the reply and only then takes the connection's next request.
// So each connection has one request in progress at a time, its answers go
// out in order, and what a pipelining client sends meanwhile waits in the
// kernel's socket buffer rather than in ours.
//
// Replies are written by the loop, not by the decision threads: the state
// has to come back to the loop anyway (it chooses what to read next and owns
// the timers), so writing there adds no handoff, and every socket operation
// stays on one thread. A decision thread writing itself could hit a
// descriptor the loop had just closed and the kernel had given to a new client.
#include "plugin/policy_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <system_error>

#include "common/logging.h"
#include "conf/units.h"

namespace relayguard {
namespace {

// epoll's tags for the two descriptors that are not connections; connection
// ids count up from 1 and never come near these.
constexpr std::uint64_t listener_tag = ~std::uint64_t{0};
constexpr std::uint64_t wakeup_tag = listener_tag - 1;

// Out of file descriptors (or another accept failure): how long the listener
// rests before the next try. Clients wait in the listen queue meanwhile.
constexpr std::chrono::milliseconds accept_retry_interval{100};
// Connections accepted per wake-up, so a flood of connects cannot starve
// the clients already connected.
constexpr int accept_burst = 64;

// Where a connection is in its exchange with the client; each phase has its own timer.
enum class Phase {
    idle,       // nothing buffered: listen.policy_idle_timeout
    receiving,  // part of a request buffered: listen.policy_read_timeout from its first bytes
    deciding,   // a decision thread has it: no timer here (the engine bounds its own waits)
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
        if (deciding) return Phase::deciding;
        if (!output.empty()) return Phase::replying;
        if (reader.has_partial()) return Phase::receiving;
        return Phase::idle;
    }

    const std::uint64_t id;
    UniqueFd fd;
    const std::string peer;  // for the log
    PolicyRequestReader reader;
    PolicyConnection state;     // away with a decision thread while `deciding`
    bool deciding = false;
    bool input_closed = false;  // the client shut its side: answer what is complete, then close
    std::string output;         // answer bytes the socket has not taken yet
    std::uint32_t watched = 0;  // the events epoll reports for it
    Phase phase = Phase::idle;
    SteadyTime deadline = SteadyTime::max();
};

PolicyServer::PolicyServer(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings)
    : decider_(engine, ledger), settings_(settings) {}

PolicyServer::~PolicyServer() { stop(); }

std::string PolicyServer::action_for(const Decision& d) {
    switch (d.verdict) {
        case Verdict::proceed: return "action=DUNNO";
        case Verdict::permit: return "action=OK";
        case Verdict::discard: return "action=DISCARD " + d.reply.text;
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
    wakeup_ = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    // The listener too is non-blocking: a client that resets between epoll's
    // report and accept must not block the loop.
    bool ready = epoll_ && wakeup_ && set_nonblocking(listener_.get()) &&
                 epoll_watch(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), EPOLLIN, listener_tag) &&
                 epoll_watch(epoll_.get(), EPOLL_CTL_ADD, wakeup_.get(), EPOLLIN, wakeup_tag);
    if (!ready) throw std::system_error(errno, std::generic_category(), "policy: cannot set up the event loop");
    for (std::uint32_t i = 0; i < settings_.workers; ++i) decision_threads_.emplace_back([this] { run_decisions(); });
    loop_ = std::thread([this] { run_loop(); });
}

void PolicyServer::stop() {
    if (stopping_.exchange(true)) return;
    if (loop_.joinable()) {
        wake_loop();
        loop_.join();  // the loop closes every connection on its way out
    }
    listener_.reset();
    jobs_.close();
    for (auto& t : decision_threads_) t.join();
    decision_threads_.clear();
}

void PolicyServer::wake_loop() {
    std::uint64_t one = 1;
    // Only fails when the counter is saturated, and then the loop is awake anyway.
    [[maybe_unused]] auto written = ::write(wakeup_.get(), &one, sizeof one);
}

void PolicyServer::run_decisions() {
    while (auto job = jobs_.pop()) {
        try {
            Decision d = decider_.decide(job->state, job->request, job->arrival);
            decided_.push(DecisionDone{std::move(job->state), action_for(d) + "\n\n"});
        } catch (const std::exception& e) {
            // Postfix answers its client 4xx for a policy service that closes.
            spdlog::error("policy: connection {}: the decision failed: {}; closing the connection", job->state.id,
                          e.what());
            decided_.push(DecisionDone{std::move(job->state), "", true});
        }
        wake_loop();
    }
}

void PolicyServer::run_loop() {
    std::array<epoll_event, 128> events{};
    while (!stopping_) {
        int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                             wait_milliseconds(std::chrono::steady_clock::now()));
        if (n < 0 && errno != EINTR) {
            spdlog::critical("policy: epoll_wait failed: {}; the policy service stops", error_text(errno));
            break;
        }
        auto now = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i) {
            std::uint64_t tag = events[i].data.u64;
            if (tag == listener_tag) accept_connections(now);
            else if (tag == wakeup_tag) take_decisions(now);
            else on_connection_event(tag, events[i].events, now);
        }
        expire_deadlines(now);
        resume_accepting_when_due(now);
    }
    connections_.clear();
    deadlines_.clear();
}

// Until the soonest connection deadline or the end of an accept pause.
int PolicyServer::wait_milliseconds(SteadyTime now) const {
    std::optional<SteadyTime> next;
    if (!deadlines_.empty()) next = deadlines_.begin()->first;
    if (accept_paused_until_ && (!next || *accept_paused_until_ < *next)) next = accept_paused_until_;
    if (!next) return -1;
    if (*next <= now) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(*next - now).count();
    return static_cast<int>(std::min<decltype(ms)>(ms, 60'000));
}

void PolicyServer::accept_connections(SteadyTime now) {
    for (int i = 0; i < accept_burst; ++i) {
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&peer), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int error = errno;
            if (error == EAGAIN || error == EWOULDBLOCK) return end_accept_failures();
            // That client gave up before we took it; the next one may be fine.
            if (error == ECONNABORTED || error == EINTR || error == EPROTO) continue;
            return pause_accepting(error, now);
        }
        add_connection(UniqueFd(fd), describe_peer(peer), now);
    }
}

// EMFILE, ENFILE and the like: retrying at once would spin on a listener
// that stays readable, so it rests a moment; one warning per episode.
void PolicyServer::pause_accepting(int error, SteadyTime now) {
    if (!accept_failing_) {
        spdlog::warn("policy: cannot accept connections: {}; new clients wait in the listen queue, retrying every {} ms",
                     error_text(error), accept_retry_interval.count());
        accept_failing_ = true;
    }
    epoll_watch(epoll_.get(), EPOLL_CTL_MOD, listener_.get(), 0, listener_tag);
    accept_paused_until_ = now + accept_retry_interval;
}

// An episode ends when no client is left waiting in the listen queue, not at
// the first accept that works again: under a flood that frees a descriptor
// now and then, that would be a warning every 100 ms.
void PolicyServer::end_accept_failures() {
    if (!accept_failing_) return;
    spdlog::info("policy: accepting connections again; no client is waiting");
    accept_failing_ = false;
}

void PolicyServer::resume_accepting_when_due(SteadyTime now) {
    if (!accept_paused_until_ || *accept_paused_until_ > now) return;
    accept_paused_until_.reset();
    epoll_watch(epoll_.get(), EPOLL_CTL_MOD, listener_.get(), EPOLLIN, listener_tag);
}

void PolicyServer::add_connection(UniqueFd fd, std::string peer, SteadyTime now) {
    std::uint64_t id = ++last_id_;
    auto conn = std::make_unique<Connection>(id, std::move(fd), std::move(peer), settings_.policy_max_request);
    if (!epoll_watch(epoll_.get(), EPOLL_CTL_ADD, conn->fd.get(), EPOLLIN, id)) {
        spdlog::error("policy: connection {} from {} dropped: epoll: {}", id, conn->peer, error_text(errno));
        return;
    }
    spdlog::debug("policy: connection {} from {}", id, conn->peer);
    conn->watched = EPOLLIN;
    conn->deadline = now + settings_.policy_idle_timeout;
    deadlines_.emplace(conn->deadline, id);
    connections_.emplace(id, std::move(conn));
}

void PolicyServer::on_connection_event(std::uint64_t id, std::uint32_t events, SteadyTime now) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;  // closed earlier in this round
    Connection& c = *it->second;
    // An error, or hung up both ways: nobody is left to read an answer.
    bool open = (events & (EPOLLERR | EPOLLHUP)) == 0;
    if (!open) spdlog::debug("policy: connection {} hung up", id);
    if (open && (events & EPOLLOUT) != 0) open = write_output(c);
    if (open && (events & EPOLLIN) != 0) open = read_input(c);
    if (open) open = advance(c, now);
    if (!open) close_connection(id);
}

// What the decision threads finished: each answer is sent, and its
// connection moves on to its next request.
void PolicyServer::take_decisions(SteadyTime now) {
    std::uint64_t count = 0;
    // Reset before taking, so an answer queued after the take wakes us again.
    [[maybe_unused]] auto got = ::read(wakeup_.get(), &count, sizeof count);
    for (auto& done : decided_.take_all()) {
        std::uint64_t id = done.state.id;
        auto it = connections_.find(id);
        if (it == connections_.end()) continue;  // the client hung up meanwhile
        Connection& c = *it->second;
        c.state = std::move(done.state);
        c.deciding = false;
        c.output += done.reply;
        bool open = !done.failed && write_output(c) && advance(c, now);
        if (!open) close_connection(id);
    }
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

// Sends what the socket takes; the rest waits for EPOLLOUT. Answers false
// when the client is gone.
bool PolicyServer::write_output(Connection& c) {
    while (!c.output.empty()) {
        ssize_t n = ::send(c.fd.get(), c.output.data(), c.output.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.output.erase(0, static_cast<std::size_t>(n));
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            spdlog::debug("policy: connection {} closed: cannot answer: {}", c.id, error_text(errno));
            return false;
        }
    }
    return true;
}

// Moves a connection on after anything happened to it: takes its next
// request when it is free for one, then sets its timer and its events.
// Answers false when it is finished and must be closed.
bool PolicyServer::advance(Connection& c, SteadyTime now) {
    if (!c.deciding && c.output.empty()) {
        if (!start_next_request(c, now)) return false;
        if (!c.deciding && c.input_closed) {
            spdlog::debug("policy: connection {} closed by the client", c.id);
            return false;
        }
    }
    reschedule(c, now);
    watch(c);
    return true;
}

// Hands the next buffered request, if one is complete, to a decision
// thread. Answers false for a malformed request: that closes its connection.
bool PolicyServer::start_next_request(Connection& c, SteadyTime now) {
    std::string error;
    auto request = c.reader.next(error);
    if (!error.empty()) {
        spdlog::warn("policy: connection {} closed: malformed request: {}", c.id, error);
        return false;
    }
    if (!request) return true;
    c.deciding = true;
    // Refused only once stop() has begun: the connection is about to be closed then.
    jobs_.push(DecisionJob{std::move(c.state), std::move(*request), now});
    return true;
}

// Reading only when free for a request is what keeps one request per
// connection in progress: the rest of a pipelining client's requests stay
// in the kernel until their turn.
void PolicyServer::watch(Connection& c) {
    std::uint32_t wanted = 0;
    if (!c.deciding && c.output.empty() && !c.input_closed) wanted |= EPOLLIN;
    if (!c.output.empty()) wanted |= EPOLLOUT;
    if (wanted == c.watched) return;
    if (epoll_watch(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), wanted, c.id)) c.watched = wanted;
}

// A new phase starts its own timer; within a phase the timer keeps running,
// so a request must be complete within the read timeout of its first bytes
// however slowly the rest trickles in.
void PolicyServer::reschedule(Connection& c, SteadyTime now) {
    Phase phase = c.current_phase();
    if (phase == c.phase) return;
    c.phase = phase;
    deadlines_.erase({c.deadline, c.id});
    c.deadline = SteadyTime::max();
    if (phase == Phase::deciding) return;
    c.deadline = now + (phase == Phase::idle ? settings_.policy_idle_timeout : settings_.policy_read_timeout);
    deadlines_.emplace(c.deadline, c.id);
}

void PolicyServer::expire_deadlines(SteadyTime now) {
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        std::uint64_t id = deadlines_.begin()->second;
        const Connection& c = *connections_.at(id);
        if (c.phase == Phase::idle) {
            spdlog::info("policy: connection {} from {} closed: idle for {} (listen.policy_idle_timeout)", id, c.peer,
                         format_duration(settings_.policy_idle_timeout));
        } else if (c.phase == Phase::receiving) {
            spdlog::warn("policy: connection {} from {} closed: request not complete after {} "
                         "(listen.policy_read_timeout)",
                         id, c.peer, format_duration(settings_.policy_read_timeout));
        } else {
            spdlog::warn("policy: connection {} from {} closed: answer not taken within {} (listen.policy_read_timeout)",
                         id, c.peer, format_duration(settings_.policy_read_timeout));
        }
        close_connection(id);
    }
}

void PolicyServer::close_connection(std::uint64_t id) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    deadlines_.erase({it->second->deadline, id});
    // Closing the socket also takes it out of the epoll set.
    connections_.erase(it);
}

}  // namespace relayguard
