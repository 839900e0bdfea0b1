// The admin socket: relayguardctl and the POP3/IMAP login hooks talk to the
// daemon here. Unix sockets only, created with listen.socket_mode and
// listen.socket_group, because whoever may write to it may open relay
// windows. One request line in, one reply line of JSON out
// ({"ok":true,...,"text":"..."} or {"ok":false,"error":"..."}), then the
// connection closes.
//
//   ping | status | reload
//   ip show ADDR | ip unblock ADDR | ip reset ADDR
//   pop grant ADDR [user=NAME] [for=DURATION] | pop show ADDR | pop list
#pragma once

#include <atomic>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/base/system_clock.h"
#include "common/daemon/admin_socket.h"
#include "common/base/reload_outcome.h"
#include "common/base/result.h"
#include "plugin/ops/engine_holder.h"

namespace relayguard {

class AdminServer {
public:
    // What only the daemon's wiring knows.
    struct Hooks {
        // Re-reads the config: what applied and what waits for a restart,
        // or what is wrong with it.
        std::function<Result<ReloadOutcome>()> reload;
        std::function<nlohmann::json()> store;    // the store's kind and health, with a "text"
        // Every open window, or why they cannot be listed.
        std::function<Result<PopWindowStore::WindowList>()> pop_list;
    };
    AdminServer(EngineHolder& engine, Hooks hooks);
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    void start(UniqueFd listener);
    void stop();

    // The reply to one request line, without its newline.
    std::string handle(std::string_view request);

private:
    std::string pop_command(const std::vector<std::string>& words);
    std::string user_command(const std::vector<std::string>& words);
    std::string user_report(DecisionEngine& engine, const std::string& user);
    std::string ip_command(const std::vector<std::string>& words);
    std::string status();

    EngineHolder& engine_;
    Hooks hooks_;
    const std::chrono::steady_clock::time_point started_ = SystemClock::monotonic();
    AdminSocket socket_;
};

// What a POP3/IMAP login opened, on the security log, for grep and audits.
void log_pop_window(const IpAddress& client, const std::string& user, TimePoint until, TimePoint now, const char* via);

}  // namespace relayguard
