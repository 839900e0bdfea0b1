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
enum class SmarthostAuth { none, smtp_auth, pop_before_smtp, oauth2 };
enum class OAuthGrant { refresh_token, client_credentials };
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

// [delivery.oauth2]: how the relay client gets the access tokens that
// XOAUTH2 and OAUTHBEARER send instead of a password (delivery.auth =
// "oauth2"). A provider preset fills the endpoints and the scope.
struct OAuthSettings {
    std::string provider;        // "microsoft365", "google", or "" (endpoints given)
    std::string tenant = "organizations";  // Microsoft 365: the directory (tenant) id or domain
    std::string token_endpoint;  // https only
    std::string device_endpoint; // RFC 8628 device authorisation; "" = no device login
    std::string client_id;
    std::string client_secret;   // never logged; or read from client_secret_file
    std::string client_secret_file;
    std::string scope;
    OAuthGrant grant = OAuthGrant::refresh_token;
    std::string token_store = "/var/spool/relayguard/oauth2-tokens.json";
    std::string ca_file;         // "" = the system's CAs
    Duration refresh_margin = std::chrono::minutes(5);     // an access token is renewed this long before it ends
    Duration idle_refresh = std::chrono::hours(24 * 7);    // a refresh token unused this long is used anyway
    Duration timeout = std::chrono::seconds(30);           // one call to the token endpoint
};

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
    // A client certificate shown to every server that asks (a smart host
    // that relays for a known certificate instead of AUTH); "" = none.
    std::string tls_client_cert;
    std::string tls_client_key;
    OAuthSettings oauth2;
    std::string helo_name;    // "" = the host name
    // The domain relayguard-sendmail gives a sender or recipient without one
    // (Postfix's myorigin); "" = /etc/mailname, else this host's full name.
    std::string origin;
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
