// The Postfix policy delegation front end (check_policy_service): accepts
// persistent connections from any number of smtpd processes and answers
// action=... lines. One epoll event loop thread does every accept, read and
// timeout, so an idle or half-sent connection costs a file descriptor and a
// few hundred bytes, never a thread: no number of them can lock Postfix out.
// Complete requests are decided by `listen.workers` decision threads,
// because the engine may wait on Redis or DNS and one slow answer must not
// stall every connection; a decision thread writes its answer itself.
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
#include <unordered_set>
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
        int socket;            // the loop closes it only once the decision is back
        bool wake_loop;        // more is buffered: the loop goes on as soon as this is answered
    };
    // The decision on its way back to the loop, its answer already sent as
    // far as the socket took it.
    struct DecisionDone {
        PolicyConnection state;
        std::string unsent;    // what the socket did not take: the loop writes it
        bool close = false;    // the client is gone, or the decision failed
        bool wake_loop = false;
    };
    // Decisions on their way back. The loop is woken only for those it must
    // act on at once; it collects the others at its next wake-up.
    class ReturnedDecisions {
    public:
        // Answers whether the loop must be woken for it.
        bool push(DecisionDone done);
        // The loop wants waking when connection `id`'s decision is back.
        // Answers false when it is back already (nothing will wake it).
        bool wake_when_back(std::uint64_t id);
        std::vector<DecisionDone> take_all();

    private:
        std::mutex mutex_;
        std::vector<DecisionDone> done_;
        std::unordered_set<std::uint64_t> wake_for_;
    };

    void run_loop();
    void run_decisions();
    void answer(DecisionJob& job);
    void wake_loop();
    int wait_milliseconds(SteadyTime now) const;

    void accept_connections(SteadyTime now);
    void pause_accepting(int error, SteadyTime now);
    void end_accept_failures();
    void resume_accepting_when_due(SteadyTime now);
    void add_connection(UniqueFd fd, std::string peer, SteadyTime now);

    void on_connection_event(std::uint64_t id, std::uint32_t events, SteadyTime now);
    void defer_while_deciding(Connection& c, std::uint32_t events);
    void collect_decisions(SteadyTime now);
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
    ReturnedDecisions returned_;
    std::thread loop_;
    std::vector<std::thread> decision_threads_;

    // Touched by the loop thread only (and by stop() once it has ended).
    std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> connections_;
    std::set<std::pair<SteadyTime, std::uint64_t>> deadlines_;  // (when, connection id), soonest first
    std::uint64_t last_id_ = 0;
    std::size_t decisions_out_ = 0;  // handed to decision threads, not yet collected
    bool collect_now_ = false;       // a decision is back that nothing will wake the loop for
    std::optional<SteadyTime> accept_paused_until_;  // accept failed (EMFILE...): try again then
    bool accept_failing_ = false;                    // an episode of failed accepts, warned about once
};

}  // namespace relayguard
