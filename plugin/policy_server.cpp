// The policy delegation server: one epoll event loop and a fixed pool of
// decision threads; see the header for why.
//
// Life of a request: the loop reads bytes into the connection's reader; once
// a request is complete it moves the request and the connection's
// PolicyConnection state into the job queue. A decision thread decides it,
// sends the answer on the socket itself (non-blocking) and hands the state
// back; only then does the loop take the connection's next request. So each
// connection has one request in progress at a time and its answers go out
// in order; what a pipelining client sends meanwhile waits in the kernel's
// socket buffer until the loop reads it.
//
// Why the decision thread writes: one handoff per request instead of two.
// Had the loop written the answer, every request would wake the loop once
// more, read an eventfd and send; on two cores that second wake-up cut
// throughput to a third of a thread per connection. Now the loop is woken
// for a returned decision only when it must act at once: the socket did not
// take the whole answer (EAGAIN: the loop writes the rest), the client is
// gone, more of its requests are buffered, or the loop saw input meanwhile.
// Other returns it collects at its next wake-up, at most 100 ms later.
// Writing from another thread is safe because the loop never closes a
// connection whose decision is out (a hang-up meanwhile only takes it out of
// epoll), and stop() joins the decision threads before anything is closed:
// a descriptor can never be closed and reused under a decision thread.
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
// How soon the loop collects decisions nobody woke it for: the idle timer of
// their connections starts then.
constexpr std::chrono::milliseconds collect_interval{100};

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

void reset_wakeup(int eventfd) {
    std::uint64_t count = 0;
    // Fails only when it is not set, and then there is nothing to reset.
    [[maybe_unused]] auto got = ::read(eventfd, &count, sizeof count);
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
        if (deciding) return Phase::deciding;
        if (!output.empty()) return Phase::replying;
        if (reader.has_partial()) return Phase::receiving;
        return Phase::idle;
    }

    const std::uint64_t id;
    UniqueFd fd;
    const std::string peer;  // for the log
    PolicyRequestReader reader;
    PolicyConnection state;      // away with a decision thread while `deciding`
    bool deciding = false;
    bool input_closed = false;   // the client shut its side: answer what is complete, then close
    bool read_deferred = false;  // input came while deciding: read it once the decision is back
    bool hung_up = false;        // out of epoll while deciding: close once the decision is back
    std::string output;          // answer bytes the socket has not taken yet
    std::uint32_t watched = 0;   // the events epoll reports for it
    Phase phase = Phase::idle;
    SteadyTime deadline = SteadyTime::max();
};

PolicyServer::PolicyServer(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings)
    : decider_(engine, ledger, settings.stage_timeout), settings_(settings) {}

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
    // Decision threads first: they write to sockets, which must stay open
    // until the last of them is done.
    jobs_.close();
    for (auto& t : decision_threads_) t.join();
    decision_threads_.clear();
    if (loop_.joinable()) {
        wake_loop();
        loop_.join();
    }
    connections_.clear();
    deadlines_.clear();
    listener_.reset();
}

void PolicyServer::wake_loop() {
    std::uint64_t one = 1;
    // Only fails when the counter is saturated, and then the loop is awake anyway.
    [[maybe_unused]] auto written = ::write(wakeup_.get(), &one, sizeof one);
}

void PolicyServer::run_decisions() {
    while (auto job = jobs_.pop()) answer(*job);
}

// Decides one request and sends the answer from this thread; only what the
// socket does not take goes back to the loop to write.
void PolicyServer::answer(DecisionJob& job) {
    DecisionDone done;
    try {
        Decision d = decider_.decide(job.state, job.request, job.arrival);
        done.unsent = action_for(d) + "\n\n";
        if (!send_now(job.socket, done.unsent)) {
            spdlog::debug("policy: connection {} closed: cannot answer: {}", job.state.id, error_text(errno));
            done.close = true;
        }
    } catch (const std::exception& e) {
        // Postfix answers its client 4xx for a policy service that closes.
        spdlog::error("policy: connection {}: the decision failed: {}; closing the connection", job.state.id,
                      e.what());
        done.close = true;
    }
    done.wake_loop = job.wake_loop || done.close || !done.unsent.empty();
    done.state = std::move(job.state);
    if (returned_.push(std::move(done))) wake_loop();
}

bool PolicyServer::ReturnedDecisions::push(DecisionDone done) {
    std::lock_guard lock(mutex_);
    bool asked = wake_for_.erase(done.state.id) > 0;
    bool wake = done.wake_loop || asked;
    done_.push_back(std::move(done));
    return wake;
}

bool PolicyServer::ReturnedDecisions::wake_when_back(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    for (const auto& d : done_) {
        if (d.state.id == id) return false;
    }
    wake_for_.insert(id);
    return true;
}

std::vector<PolicyServer::DecisionDone> PolicyServer::ReturnedDecisions::take_all() {
    std::lock_guard lock(mutex_);
    return std::exchange(done_, {});
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
        // The eventfd is reset before the decisions are taken, so one that
        // comes back after the take wakes the loop again.
        for (int i = 0; i < n; ++i) {
            if (events[i].data.u64 == wakeup_tag) reset_wakeup(wakeup_.get());
        }
        collect_decisions(now);
        for (int i = 0; i < n; ++i) {
            std::uint64_t tag = events[i].data.u64;
            if (tag == listener_tag) accept_connections(now);
            else if (tag != wakeup_tag) on_connection_event(tag, events[i].events, now);
        }
        expire_deadlines(now);
        resume_accepting_when_due(now);
    }
}

// Until the soonest connection deadline, the end of an accept pause, or the
// next collection of decisions that came back without waking the loop.
int PolicyServer::wait_milliseconds(SteadyTime now) const {
    if (collect_now_) return 0;
    std::optional<SteadyTime> next;
    auto consider = [&next](SteadyTime t) {
        if (!next || t < *next) next = t;
    };
    if (!deadlines_.empty()) consider(deadlines_.begin()->first);
    if (accept_paused_until_) consider(*accept_paused_until_);
    if (decisions_out_ > 0) consider(now + collect_interval);
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
    if (c.deciding) return defer_while_deciding(c, events);
    // An error, or hung up both ways: nobody is left to read an answer.
    bool open = (events & (EPOLLERR | EPOLLHUP)) == 0;
    if (!open) spdlog::debug("policy: connection {} hung up", id);
    if (open && (events & EPOLLOUT) != 0) open = write_output(c);
    if (open && (events & EPOLLIN) != 0) open = read_input(c);
    if (open) open = advance(c, now);
    if (!open) close_connection(id);
}

// A decision thread may still write to this socket, so it stays open and
// untouched until the decision is back: input waits in the kernel, and a
// hang-up only takes the socket out of epoll (it cannot be masked, and would
// be reported again and again). The loop asks to be woken when the decision
// is back, to act on it then.
void PolicyServer::defer_while_deciding(Connection& c, std::uint32_t events) {
    if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
        spdlog::debug("policy: connection {} hung up", c.id);
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
        c.hung_up = true;
        c.watched = 0;
    } else {
        c.read_deferred = true;
        watch(c);
    }
    if (!returned_.wake_when_back(c.id)) collect_now_ = true;
}

// The decisions that came back: each connection moves on to its next
// request, or is closed if its client went away meanwhile.
void PolicyServer::collect_decisions(SteadyTime now) {
    collect_now_ = false;
    for (auto& done : returned_.take_all()) {
        --decisions_out_;
        std::uint64_t id = done.state.id;
        auto it = connections_.find(id);
        if (it == connections_.end()) continue;
        Connection& c = *it->second;
        c.state = std::move(done.state);
        c.deciding = false;
        c.read_deferred = false;
        c.output = std::move(done.unsent);
        bool open = !done.close && !c.hung_up && write_output(c) && advance(c, now);
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

// The rest of an answer the socket did not take at once; more waits for
// EPOLLOUT. Answers false when the client is gone.
bool PolicyServer::write_output(Connection& c) {
    if (send_now(c.fd.get(), c.output)) return true;
    spdlog::debug("policy: connection {} closed: cannot answer: {}", c.id, error_text(errno));
    return false;
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
    // With more buffered, or the client's side shut, the loop has work to do
    // as soon as this is answered.
    bool more = c.reader.has_partial() || c.input_closed;
    // Refused only once stop() has begun: the connection is about to be closed then.
    if (jobs_.push(DecisionJob{std::move(c.state), std::move(*request), now, c.fd.get(), more})) ++decisions_out_;
    return true;
}

// Reading only when free for a request is what keeps one request per
// connection in progress. While a decision is out, input is still watched
// (Postfix sends none then, so the common case costs no epoll_ctl), and the
// first that comes turns it off until the decision is back.
void PolicyServer::watch(Connection& c) {
    if (c.hung_up) return;
    std::uint32_t wanted = 0;
    if (!c.input_closed && !c.read_deferred && c.output.empty()) wanted |= EPOLLIN;
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
