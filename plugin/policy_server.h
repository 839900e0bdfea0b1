// The Postfix policy delegation front end (check_policy_service): accepts
// persistent connections from many smtpd processes, turns each request into
// engine calls and answers action=... lines. One thread per connection, up
// to `listen.workers` connections; Postfix holds one per smtpd process.
#pragma once

#include <atomic>
#include <list>
#include <mutex>
#include <set>
#include <thread>

#include "common/unique_fd.h"
#include "conf/config.h"
#include "plugin/engine_holder.h"
#include "plugin/transaction_ledger.h"

namespace relayguard {

class PolicyServer {
public:
    // `ledger` is shared with the milter, so a message both report is counted once.
    PolicyServer(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings);
    ~PolicyServer();
    PolicyServer(const PolicyServer&) = delete;
    PolicyServer& operator=(const PolicyServer&) = delete;

    void start(UniqueFd listener);
    void stop();

    // The Postfix reply line for a decision, without the final empty line.
    static std::string action_for(const Decision& d);

private:
    void accept_loop();
    void serve(int fd, std::uint64_t id);

    EngineHolder& engine_;
    TransactionLedger& ledger_;
    const ListenSettings& settings_;
    UniqueFd listener_;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
    std::mutex mutex_;
    std::set<int> open_fds_;
    std::list<std::thread> workers_;
    std::list<std::thread::id> finished_;
};

}  // namespace relayguard
