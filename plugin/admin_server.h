// The admin socket: relayguardctl and the POP3/IMAP login hooks talk to the
// daemon here. Unix sockets only, created with listen.socket_mode and
// listen.socket_group, because whoever may write to it may open relay
// windows. One request line in, one reply line out ("ok ..." or
// "error ..."), then the connection closes.
//
//   ping
//   pop grant ADDR [user=NAME] [for=DURATION]
//   pop show ADDR
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "policy/decision_engine.h"

namespace relayguard {

class AdminServer {
public:
    explicit AdminServer(DecisionEngine& engine) : engine_(engine) {}
    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    void start(UniqueFd listener);
    void stop();

    // The reply to one request line, without its newline.
    std::string handle(std::string_view request);

private:
    void accept_loop();
    std::string pop_command(const std::vector<std::string>& words);

    DecisionEngine& engine_;
    UniqueFd listener_;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
};

// What a POP3/IMAP login opened, on the security log, for grep and audits.
void log_pop_window(const IpAddress& client, const std::string& user, TimePoint until, TimePoint now, const char* via);

}  // namespace relayguard
