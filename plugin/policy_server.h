// The Postfix policy delegation front end (check_policy_service): accepts
// persistent connections from any number of smtpd processes and answers
// action=... lines. One epoll event loop thread does every accept, read,
// write and timeout, so an idle or half-sent connection costs a file
// descriptor and a few hundred bytes, never a thread: no number of them can
// lock Postfix out. Complete requests are decided by `listen.workers`
// decision threads, because the engine may wait on Redis or DNS and one slow
// answer must not stall every connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/unique_fd.h"
#include "conf/config.h"
#include "plugin/job_queue.h"
#include "plugin/policy_decider.h"

namespace relayguard {

class PolicyServer {
public:
    // `ledger` is shared with the milter, so a message both report is counted once.
    PolicyServer(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings);
    ~PolicyServer();
    PolicyServer(const PolicyServer&) = delete;
    PolicyServer& operator=(const PolicyServer&) = delete;

    void start(UniqueFd listener);
    // Closes the listener and every connection, and joins the threads once
    // the decisions in hand are made; decisions not yet started are dropped.
    void stop();

    // The Postfix reply line for a decision, without the final empty line.
    static std::string action_for(const Decision& d);

private:
    using SteadyTime = std::chrono::steady_clock::time_point;
    struct Connection;  // one client's socket, buffers and timer (policy_server.cpp)

    // A complete request on its way to a decision thread, with its
    // connection's state: while it is away, the loop holds no state of it.
    struct DecisionJob {
        PolicyConnection state;
        PolicyRequest request;
        SteadyTime arrival;
    };
    // The answer on its way back to the loop.
    struct DecisionDone {
        PolicyConnection state;
        std::string reply;        // the bytes to send
        bool failed = false;      // the decision threw: close the connection instead
    };

    void run_loop();
    void run_decisions();
    void wake_loop();
    int wait_milliseconds(SteadyTime now) const;

    void accept_connections(SteadyTime now);
    void pause_accepting(int error, SteadyTime now);
    void end_accept_failures();
    void resume_accepting_when_due(SteadyTime now);
    void add_connection(UniqueFd fd, std::string peer, SteadyTime now);

    void on_connection_event(std::uint64_t id, std::uint32_t events, SteadyTime now);
    void take_decisions(SteadyTime now);
    bool read_input(Connection& c);
    bool write_output(Connection& c);
    bool advance(Connection& c, SteadyTime now);
    bool start_next_request(Connection& c, SteadyTime now);
    void watch(Connection& c);
    void reschedule(Connection& c, SteadyTime now);
    void expire_deadlines(SteadyTime now);
    void close_connection(std::uint64_t id);

    PolicyDecider decider_;
    const ListenSettings& settings_;
    UniqueFd listener_;
    UniqueFd epoll_;
    UniqueFd wakeup_;  // eventfd: decision threads and stop() wake the loop with it
    std::atomic<bool> stopping_{false};
    JobQueue<DecisionJob> jobs_;
    JobQueue<DecisionDone> decided_;
    std::thread loop_;
    std::vector<std::thread> decision_threads_;

    // Touched by the loop thread only.
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
    std::set<std::pair<SteadyTime, std::uint64_t>> deadlines_;  // (when, connection id), soonest first
    std::uint64_t last_id_ = 0;
    std::optional<SteadyTime> accept_paused_until_;  // accept failed (EMFILE...): try again then
    bool accept_failing_ = false;                    // an episode of failed accepts, warned about once
};

}  // namespace relayguard
