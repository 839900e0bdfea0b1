// Settings of the relay client (relayguard-relayd): where it takes mail in,
// where it keeps it, and how and when it delivers it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/base/clock.h"
#include "policy/ip_group.h"

namespace relayguard {

enum class DeliveryRoute { mx, smarthost };
enum class SmarthostAuth { none, smtp_auth, pop_before_smtp };
enum class StartTlsPolicy { off, opportunistic, required };
enum class PopLoginMethod { user, apop };

// Who may hand mail to the intake when no allowed_clients is configured:
// loopback only, so a non-loopback listen is never an open relay by default.
// Each network is its own group, named by the network itself.
inline std::vector<IpGroup> loopback_clients() {
    std::vector<IpGroup> out;
    for (const char* net : {"127.0.0.0/8", "::1/128"}) {
        auto cidr = Cidr::parse(net);
        out.push_back(IpGroup{cidr->to_string(), {*cidr}});
    }
    return out;
}

struct DeliverySettings {
    std::string listen = "inet:127.0.0.1:10025";
    // Clients the intake takes mail from (TCP listen only): [ip_groups]
    // names, or networks; everyone else gets 554 5.7.1 at connect.
    std::vector<IpGroup> allowed_clients = loopback_clients();
    std::string admin = "unix:/run/relayguard/relayd.sock";  // relayguardctl queue ...; "" = none
    std::string metrics;  // "IP:PORT" of the Prometheus endpoint, "" = none
    std::string queue_dir = "/var/spool/relayguard";
    DeliveryRoute route = DeliveryRoute::mx;
    std::vector<std::string> smarthosts;  // "host:port", tried in order; port 465 is implicit TLS
    std::uint16_t mx_port = 25;           // port of MX hosts
    SmarthostAuth auth = SmarthostAuth::none;
    std::string username;
    std::string password;    // never logged
    std::string pop_server;  // host:port for POP-before-SMTP at the parent
    PopLoginMethod pop_method = PopLoginMethod::user;
    Duration pop_login_interval = std::chrono::minutes(1);  // a login is reused this long
    StartTlsPolicy starttls = StartTlsPolicy::opportunistic;
    bool tls_verify = true;   // with starttls = "required" and on port 465
    // Whether AUTH PLAIN/LOGIN and POP3 USER/PASS may go over a session that
    // is not encrypted (a parent on a trusted wire); false: withheld, deferred.
    bool allow_plaintext_auth = false;
    std::string tls_ca_file;  // "" = the system's CAs
    std::string helo_name;    // "" = the host name
    std::uint32_t threads = 4;
    Duration connect_timeout = std::chrono::seconds(30);
    Duration command_timeout = std::chrono::minutes(5);
    Duration attempt_timeout = std::chrono::minutes(10);  // watchdog of one delivery attempt
    Duration retry_interval = std::chrono::minutes(5);
    Duration max_retry_interval = std::chrono::seconds(4000);
    Duration warning_delay = std::chrono::hours(4);
    Duration message_lifetime = std::chrono::hours(24 * 5);
    std::string report_language = "en";
    // Sender domain (lower case; ".example.de" for its subdomains) -> the
    // language of that sender's reports, before Content-Language and
    // report_language.
    std::map<std::string, std::string> report_languages;
    std::string reports_dir = "/usr/share/relayguard/reports";
    std::uint64_t bounce_size_limit = 50ull << 10;  // a bounce holds the whole message up to this size
    std::uint64_t max_message_size = 50ull << 20;
    std::uint32_t max_queue_messages = 100000;
    std::uint64_t queue_min_free = 100ull << 20;
};

}  // namespace relayguard
