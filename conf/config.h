// The whole configuration of relayguard, read from one TOML file. Every key
// is known: an unknown key is an error, because a typo must never silently
// turn a protection off. Errors name the file, the line and the key.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "delivery/delivery_settings.h"
#include "policy/alert_throttle.h"
#include "policy/ip_group.h"
#include "policy/login_pattern.h"
#include "policy/policy_settings.h"

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

struct DaemonSettings {
    std::string user;  // drop privileges to this user after binding ("" = stay)
    std::string group;
    std::string pid_file;
};

enum class RedisMode { single, sentinel, cluster };

struct RedisSettings {
    RedisMode mode = RedisMode::single;
    std::vector<std::string> servers{"127.0.0.1:6379"};  // host:port or unix:/path
    std::string sentinel_master = "mymaster";
    std::string username;
    std::string password;  // never logged
    std::string key_prefix = "relayguard:";
    Duration connect_timeout = std::chrono::milliseconds(200);
    Duration command_timeout = std::chrono::milliseconds(200);
    std::uint32_t pool_size = 8;
    Duration connection_lease = std::chrono::seconds(60);
};

enum class StoreType { memory, redis };

struct StoreSettings {
    StoreType type = StoreType::memory;
    std::uint32_t memory_max_clients = 100000;
    RedisSettings redis;
};

struct ResolverSettings {
    std::vector<std::string> servers;  // "host:port"; empty: /etc/resolv.conf
    Duration timeout = std::chrono::seconds(2);
    std::uint32_t tries = 2;
    std::uint32_t cache_max_entries = 50000;
    Duration cache_max_ttl = std::chrono::hours(1);
    Duration negative_ttl = std::chrono::minutes(5);
};

struct LogSettings {
    std::string level = "info";
    std::vector<std::string> targets{"stderr"};  // "stderr", "syslog" or a file path
    std::string security_log;                    // refusals also go to this file
    bool connection_log = false;                 // one line per SMTP session, at its close
    std::string connection_log_file;             // also into this file ("" = the main log only)
};

// The relay section as written, before it is turned into a DomainSet.
struct LocalDomainSource {
    std::vector<std::string> domains;
    std::string file;
    bool match_subdomains = false;
};

// Where POP3/IMAP logins are learnt from, besides the admin socket.
struct PopLoginSettings {
    std::string log_file;  // followed for login lines ("" = off)
    std::vector<std::string> log_patterns = default_login_patterns();
};

struct Config {
    std::string source;  // file the config came from
    ListenSettings listen;
    DaemonSettings daemon;
    std::vector<IpGroup> ip_groups;
    LocalDomainSource local_domains;
    PolicySettings policy;
    StoreSettings store;
    ResolverSettings resolver;
    PopLoginSettings pop_logins;
    DeliverySettings delivery;
    AlertSettings alerts;
    LogSettings log;
};

struct ConfigError {
    std::string file;
    int line = 0;     // 0: the error is about the file as a whole
    std::string key;  // dotted path, e.g. "limits.message_rate.max"
    std::string message;
    std::string to_string() const;
};

struct ConfigLoad {
    std::optional<Config> config;
    std::vector<ConfigError> errors;
};

ConfigLoad load_config_file(const std::string& path);
// `source_name` stands in for a file name in errors.
ConfigLoad load_config_text(std::string_view text, const std::string& source_name);

// The effective settings as TOML, with secrets masked.
std::string render_config(const Config& config);

// The example config compiled into the binary.
std::string_view embedded_default_config();

}  // namespace relayguard
