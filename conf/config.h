// The whole configuration of relayguard, read from one TOML file. Every key
// is known: an unknown key is an error, because a typo must never silently
// turn a protection off. Errors name the file, the line and the key. Each
// section's struct lives with the code that uses it; conf/ only loads,
// validates and renders them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/base/reload_outcome.h"
#include "common/daemon/daemon_settings.h"
#include "common/daemon/log_settings.h"
#include "common/net/resolver_settings.h"
#include "delivery/delivery_settings.h"
#include "plugin/frontends/auth_event_settings.h"
#include "plugin/frontends/listen_settings.h"
#include "plugin/ops/pop_login_settings.h"
#include "plugin/stores/store_settings.h"
#include "policy/alert_throttle.h"
#include "policy/ip_group.h"
#include "policy/policy_settings.h"

namespace relayguard {

// Which MTA the local domains are also read from (common/mta/mta_domains.h).
enum class DomainsFrom { none, postfix, sendmail };
// What a domain table relayguard cannot list does: stop the start (and keep
// the domains in force at a reload or refresh), or be skipped and named.
enum class UnreadableTables { stop, skip };

// The relay section as written, before it is turned into a DomainSet.
struct LocalDomainSource {
    std::vector<std::string> domains;
    std::string file;
    bool match_subdomains = false;
    DomainsFrom from = DomainsFrom::none;
    std::string mta_config;  // Postfix's config directory or sendmail.cf; "" = the MTA's default
    UnreadableTables unreadable_tables = UnreadableTables::stop;
};

struct Config {
    std::string source;  // file the config came from
    ListenSettings listen;
    DaemonSettings daemon;
    std::vector<IpGroup> ip_groups;
    LocalDomainSource local_domains;
    PolicySettings policy;
    StoreSettings store;
    ResolverSettings dns;  // [dns]: the resolver; its checks are policy.dns
    PopLoginSettings pop_before_smtp;
    AuthEventSettings auth_events;
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
    // Every error on one line, "; " between them (for a refused reload).
    std::string errors_text() const;
};

// The file at `path`, or the embedded default (the example config) when
// `path` is "": what a daemon started without --config runs on.
ConfigLoad load_config(const std::string& path);

ConfigLoad load_config_file(const std::string& path);
// `source_name` stands in for a file name in errors.
ConfigLoad load_config_text(std::string_view text, const std::string& source_name);

// The effective settings as TOML, with secrets masked.
std::string render_config(const Config& config);

// The dotted keys ("listen.policy", "store.redis.servers") whose effective
// values differ between two configs, secrets included; sorted.
std::vector<std::string> changed_settings(const Config& before, const Config& after);

// The example config compiled into the binary.
std::string_view embedded_default_config();

}  // namespace relayguard
