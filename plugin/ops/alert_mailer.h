// Alerts to the admin by mail: a client blocked for directory harvest or
// for failed logins, an account guessed at from many networks, a client
// over its message rate, the Redis store lost. The front ends and
// the store's health tell the mailer what happened; the throttle
// (policy/alert_throttle.h) decides what goes; one thread of its own hands
// each alert by SMTP to the relay client, so a decision never waits for a
// mail to be sent. An alert that cannot be handed over is logged and dropped:
// alerts are news, not mail entrusted to us.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "policy/alert_throttle.h"
#include "policy/decision.h"
#include "policy/session.h"

namespace relayguard {

class AlertMailer {
public:
    AlertMailer(AlertSettings settings, const Clock& clock);
    ~AlertMailer();
    AlertMailer(const AlertMailer&) = delete;
    AlertMailer& operator=(const AlertMailer&) = delete;

    // A refusal a front end made; only some rules are alert-worthy.
    void on_refusal(const SessionState& session, const Decision& decision, std::string_view stage);
    // Logins to `user` failed from `networks` client networks (the last
    // from `last_client`): a password guessed from many places.
    void on_account_attack(const std::string& user, std::uint32_t networks, const IpAddress& last_client);
    // `user` was marked compromised (its mail is now held).
    void on_account_compromised(const std::string& user, const std::string& reason, const IpAddress& client);
    // The shared store was lost (true) or is back (false).
    void on_store_change(bool lost, const std::string& store, const std::string& why);

    // The alert as a mail: headers and body, CRLF line ends.
    std::string compose(AlertEvent event, const std::string& subject_line, const std::string& body,
                        std::uint64_t held_back) const;

private:
    struct Pending {
        AlertEvent event;
        std::string subject;
        std::string body;
        std::uint64_t held_back;
    };
    void raise(AlertEvent event, const std::string& key, std::string subject, std::string body);
    void run();
    void send(const Pending& alert);

    const AlertSettings settings_;
    const Clock& clock_;
    const std::string host_;
    const std::string sender_;
    std::mutex mutex_;
    std::condition_variable wake_;
    AlertThrottle throttle_;
    std::deque<Pending> queue_;
    bool stopping_ = false;
    std::thread worker_;
};

}  // namespace relayguard
