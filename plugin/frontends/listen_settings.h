// [listen]: where the policy daemon's front ends and admin socket listen,
// and how long a client may take. The relay client shares the socket modes.
#pragma once

#include <cstdint>
#include <string>

#include "common/base/clock.h"

namespace relayguard {

struct ListenSettings {
    std::string milter = "inet:127.0.0.1:8893";   // "inet:HOST:PORT", "unix:PATH" or "" (off)
    std::string policy = "inet:127.0.0.1:10040";
    std::string admin = "unix:/run/relayguard/admin.sock";
    std::string metrics;  // "IP:PORT" of the Prometheus endpoint, "" = none
    std::string socket_mode = "0660";  // unix sockets
    std::string socket_group;
    std::string admin_group;  // the admin socket's group ("" = socket_group)
    // Policy delegation serving threads. Not a connection limit: every policy
    // connection waits in one epoll set, and a free thread takes the next
    // one with a request.
    std::uint32_t workers = 32;
    // The longest one SMTP stage waits for its answer, Redis and DNS included
    // (each front end opens a StageDeadline around its engine call); past it
    // the stage gets its fail mode's reply. The milter also gives it to
    // libmilter as its I/O timeout with the MTA.
    Duration stage_timeout = std::chrono::seconds(10);
    std::uint64_t policy_max_request = 64 * 1024;  // bytes per policy request
    // A policy request that has begun must arrive whole (and its answer be
    // read) within this; Postfix writes a request at once and waits at most
    // smtpd_policy_service_timeout (100s) for the answer.
    Duration policy_read_timeout = std::chrono::seconds(10);
    // A policy connection without a request in progress is closed after this:
    // Postfix's smtpd_policy_service_max_idle, so Postfix closes its own first.
    Duration policy_idle_timeout = std::chrono::seconds(300);
};

}  // namespace relayguard
