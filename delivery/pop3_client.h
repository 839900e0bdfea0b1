// POP-before-SMTP at the parent: some smart hosts relay only for an address
// that logged into their POP3 server a short while ago. Before the SMTP
// session the relay client logs in (APOP, or USER/PASS; STLS where offered,
// implicit TLS on port 995), reads no mail, and quits; USER/PASS never
// crosses an unencrypted connection unless delivery.allow_plaintext_auth
// says so (APOP does: it never reveals the password). A login is good for
// pop_login_interval, so a busy queue does not log in for every message.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "common/net/client_stream.h"
#include "delivery/delivery_settings.h"

namespace relayguard {

// The APOP digest (RFC 1939 7): MD5 of the greeting's timestamp and the
// password, in lower-case hex.
std::string apop_digest(const std::string& timestamp, const std::string& password);

// The "<...@...>" timestamp in a POP3 greeting, or "" when there is none.
std::string apop_timestamp(std::string_view greeting);

// What a login came to.
struct PopLogin {
    enum class Status {
        logged_in,
        failed,    // a step failed; `problem` says which, with the server's words
        withheld,  // USER/PASS not sent: the session is not encrypted and
                   // delivery.allow_plaintext_auth is false; `problem` says why
    };
    Status status = Status::failed;
    bool encrypted = false;  // logged in over TLS
    bool fresh = false;      // logged in just now, not a login reused
    std::string server;      // "host[address]:port" of the last server tried
    std::string problem;     // never the password
};

// One login at `address`:`port` and QUIT. USER/PASS goes only over TLS
// (STLS, or implicit TLS on port 995) unless allow_plaintext_auth says
// otherwise; APOP, which never reveals the password, goes either way.
PopLogin pop3_login(const std::string& address, int port, const DeliverySettings& settings, const TlsOptions& tls,
                    Deadline deadline);

class PopBeforeSmtp {
public:
    // One login at one address (pop3_login; tests count them instead).
    using Login = std::function<PopLogin(const std::string& address, int port, const DeliverySettings& settings,
                                         const TlsOptions& tls, Deadline deadline)>;
    // `clock` says how long ago the last login was.
    explicit PopBeforeSmtp(const Clock& clock, Login login = pop3_login);

    // Logs in at the first of `addresses` that answers, unless a login with
    // the same settings succeeded less than pop_login_interval ago.
    PopLogin ensure(const DeliverySettings& settings, const std::string& host,
                    const std::vector<std::string>& addresses, int port, Deadline deadline);

private:
    const Clock& clock_;
    const Login login_;
    std::mutex mutex_;  // one login at a time; the others wait for it
    SteadyTime last_ok_{};
    std::string last_key_;
};

}  // namespace relayguard
