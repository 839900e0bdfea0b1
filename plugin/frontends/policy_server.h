// The Postfix policy delegation front end (check_policy_service): accepts
// persistent connections from any number of smtpd processes and answers
// action=... lines. Every connection sits in one epoll set, so an idle or
// half-sent connection costs a file descriptor and a few hundred bytes,
// never a thread: no number of them can lock Postfix out.
// `listen.workers` serving threads all wait on that set. The thread that
// epoll wakes for a connection reads its request, decides it and writes the
// answer itself: one wake-up per request, no handoff between threads. Each
// connection is armed one-shot, so one thread at a time has it; a decision
// that waits on Redis or DNS holds that thread only, and the others go on
// serving every other connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/base/unique_fd.h"
#include "plugin/frontends/listen_settings.h"
#include "plugin/frontends/policy_decider.h"

namespace relayguard {

class PolicyServer {
public:
    // `ledger` is shared with the milter, so a message both report is counted once.
    PolicyServer(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings);
    ~PolicyServer();
    PolicyServer(const PolicyServer&) = delete;
    PolicyServer& operator=(const PolicyServer&) = delete;

    void start(UniqueFd listener);
    // Closes the listener and every connection, once the decisions in hand
    // are made and answered.
    void stop();

    // The Postfix reply line for a decision, without the final empty line.
    static std::string action_for(const Decision& d);

private:
    using SteadyTime = std::chrono::steady_clock::time_point;
    struct Connection;  // one client's socket, buffers and timer (policy_server.cpp)
    using Closing = std::vector<std::unique_ptr<Connection>>;

    void run();
    void serve(std::uint64_t id, std::uint32_t events);
    bool answer_requests(Connection& c, bool& answered);
    bool read_input(Connection& c);
    bool write_output(Connection& c);
    void release(Connection& c, bool open, bool answered);

    void accept_connections();
    void pause_accepting(int error);
    void end_accept_failures();
    void add_connection(UniqueFd fd, std::string peer);

    void on_timer();
    void schedule_locked(Connection& c, SteadyTime deadline);
    void arm_timer_locked(SteadyTime when);
    std::unique_ptr<Connection> take_locked(std::uint64_t id);
    void rearm(int fd, std::uint32_t events, std::uint64_t tag) const;

    PolicyDecider decider_;
    const ListenSettings& settings_;
    UniqueFd listener_;
    UniqueFd epoll_;
    UniqueFd stop_event_;  // eventfd, never reset once set: wakes every thread for good
    UniqueFd timer_;       // timerfd, set to the soonest connection deadline or accept retry
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> last_id_{0};
    std::vector<std::thread> threads_;

    // The listener's event is one-shot too: only the thread that took it
    // touches this. Atomic all the same: the hand-over from one thread to
    // the next goes through epoll, which ThreadSanitizer cannot see.
    std::atomic<bool> accept_failing_{false};  // an episode of failed accepts, warned about once

    // Guards what follows, and every Connection's `busy`, `phase`, `deadline`
    // and `overdue`. Held only to find, file or arm a connection, never
    // while one is read, decided or written.
    std::mutex mutex_;
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
    std::set<std::pair<SteadyTime, std::uint64_t>> deadlines_;  // (when, connection id), soonest first
    std::optional<SteadyTime> accept_paused_until_;             // accept failed (EMFILE...): try again then
    SteadyTime timer_set_for_ = SteadyTime::max();
};

}  // namespace relayguard
