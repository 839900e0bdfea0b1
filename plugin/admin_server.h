// The admin socket: relayguardctl and the POP3/IMAP login hooks talk to the
// daemon here. Unix sockets only, created with listen.socket_mode and
// listen.socket_group, because whoever may write to it may open relay
// windows. One request line in, one reply line out ("ok ..." or
// "error ..."), then the connection closes.
//
//   ping
//   pop grant ADDR [user=NAME] [for=DURATION]
//   pop show ADDR
//   reload
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "plugin/engine_holder.h"

namespace relayguard {

class AdminServer {
public:
    // `reload` re-reads the configuration; it answers "" or the errors.
    AdminServer(EngineHolder& engine, std::function<std::string()> reload)
        : engine_(engine), reload_(std::move(reload)) {}
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

    EngineHolder& engine_;
    std::function<std::string()> reload_;
    UniqueFd listener_;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
};

// What a POP3/IMAP login opened, on the security log, for grep and audits.
void log_pop_window(const IpAddress& client, const std::string& user, TimePoint until, TimePoint now, const char* via);

}  // namespace relayguard
