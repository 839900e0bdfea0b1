// The HTTP endpoint Dovecot's auth policy client talks to
// (auth_policy_server_url): it asks before each login whether to go on, and
// reports each outcome after it. A client blocked for failed logins is
// refused at the login itself; every reported failure counts towards that
// block and bars a trusted client's groups for a while; a successful
// POP3/IMAP login opens its POP-before-SMTP window.
//
// cpp-httplib serves it on a pool of its own threads, on loopback only, and
// every request must carry the header configured in
// auth_events.dovecot_api_header. Dovecot gives up on a request after
// auth_policy_server_timeout_msecs (2 s) and then lets the login go on, so
// a request is never held longer than that: the socket timeouts are 2 s.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "common/base/result.h"
#include "plugin/frontends/auth_event_settings.h"
#include "plugin/frontends/auth_report_log.h"
#include "plugin/frontends/dovecot_policy_request.h"
#include "plugin/ops/engine_holder.h"

namespace relayguard {

class DovecotPolicyServer {
public:
    DovecotPolicyServer(EngineHolder& engine, const AuthEventSettings& settings, AccountAlert on_account_attack);
    ~DovecotPolicyServer();
    DovecotPolicyServer(const DovecotPolicyServer&) = delete;
    DovecotPolicyServer& operator=(const DovecotPolicyServer&) = delete;

    // Binds settings.dovecot_policy (before privileges are dropped).
    Status bind();
    // Serves on a thread of its own until stop().
    void start();
    void stop();

    // One request, as the HTTP handler sees it: the `command` URL
    // parameter, the header's value (empty when absent) and the body.
    // Answers the HTTP status and the body. Public for the unit tests.
    struct Answer {
        int status = 200;
        std::string body;
    };
    Answer handle(std::string_view command, std::string_view header_value, std::string_view body);

private:
    Decision allow(DecisionEngine& engine, const DovecotPolicyRequest& r);
    Decision report(DecisionEngine& engine, const DovecotPolicyRequest& r);

    EngineHolder& engine_;
    const AuthEventSettings settings_;
    const std::string header_name_;
    const std::string header_value_;
    AccountAlert on_account_attack_;
    httplib::Server server_;
    std::atomic<bool> serving_ended_{false};
    std::thread thread_;
};

}  // namespace relayguard
