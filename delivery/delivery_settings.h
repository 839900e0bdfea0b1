// Settings of the relay client (relayguard-relayd): where it takes mail in,
// where it keeps it, and how and when it delivers it.
#pragma once

#include <cstdint>
#include <string>

#include "policy/clock.h"

namespace relayguard {

enum class DeliveryRoute { mx, smarthost };
enum class SmarthostAuth { none, smtp_auth, pop_before_smtp };
enum class StartTlsPolicy { off, opportunistic, required };

struct DeliverySettings {
    std::string listen = "inet:127.0.0.1:10025";
    std::string queue_dir = "/var/spool/relayguard";
    DeliveryRoute route = DeliveryRoute::mx;
    std::string smarthost;  // host name or address
    std::uint16_t smarthost_port = 587;
    SmarthostAuth auth = SmarthostAuth::none;
    std::string username;
    std::string password;    // never logged
    std::string pop_server;  // host:port for POP-before-SMTP at the parent
    StartTlsPolicy starttls = StartTlsPolicy::opportunistic;
    std::uint32_t threads = 4;
    Duration retry_interval = std::chrono::minutes(5);
    Duration max_retry_interval = std::chrono::hours(1);
    Duration warning_delay = std::chrono::hours(4);
    Duration message_lifetime = std::chrono::hours(24 * 5);
    std::string report_language = "en";
    std::string reports_dir = "/usr/share/relayguard/reports";
    std::uint64_t max_message_size = 50ull << 20;
    std::uint32_t max_queue_messages = 100000;
};

}  // namespace relayguard
