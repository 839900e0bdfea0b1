// The configuration schema, written once: every section and key with the
// field it fills. The loader walks it to read a file, the renderer walks it
// to print the effective settings, so the two can never disagree.
#pragma once

#include "conf/config.h"

namespace relayguard {

// Checks of one value: fine, or what is wrong with it.
Status check_listener(const std::string& v);
Status check_host_port(const std::string& v);
Status check_socket_mode(const std::string& v);
Status check_admin_socket(const std::string& v);
Status check_login_pattern(const std::string& v);
Status check_log_level(const std::string& v);
Status check_alert_event(const std::string& v);
Status check_mail_address(const std::string& v);
Status check_mail_domain(const std::string& v);
Status check_optional_absolute_path(const std::string& v);
Status check_ip_port(const std::string& v);
Status check_optional_ip_port(const std::string& v);
Status check_optional_loopback_ip_port(const std::string& v);
Status check_header_line(const std::string& v);
Status check_oauth_provider(const std::string& v);

// [listen]: the sockets the MTA reaches, and how long a client may take.
template <class V>
void listen_schema(V& v, Config& c) {
    v.section("listen", [&] {
        v.text("milter", c.listen.milter, check_listener);
        v.text("policy", c.listen.policy, check_listener);
        v.text("admin", c.listen.admin, check_admin_socket);
        v.text("metrics", c.listen.metrics, check_optional_ip_port);
        v.text("socket_mode", c.listen.socket_mode, check_socket_mode);
        v.text("socket_group", c.listen.socket_group);
        v.text("admin_group", c.listen.admin_group);
        v.number("workers", c.listen.workers, 1u, 1024u);
        v.duration("stage_timeout", c.listen.stage_timeout, std::chrono::milliseconds(100));
        v.size("policy_max_request", c.listen.policy_max_request, 1024);
        v.duration("policy_read_timeout", c.listen.policy_read_timeout, std::chrono::milliseconds(100),
                   std::chrono::seconds(100));
        v.duration("policy_idle_timeout", c.listen.policy_idle_timeout, std::chrono::seconds(1), std::chrono::hours(1));
    });
}

// [relay]: who may relay, and the reply to those who may not.
template <class V>
void relay_schema(V& v, Config& c) {
    v.section("relay", [&] {
        auto& r = c.policy.relay;
        v.choice("mode", r.mode, {{"restricted", RelayMode::restricted}, {"open", RelayMode::open}});
        v.list("local_domains", c.local_domains.domains);
        v.text("local_domains_file", c.local_domains.file);
        v.flag("match_subdomains", c.local_domains.match_subdomains);
        v.choice("local_domains_from", c.local_domains.from,
                 {{"none", DomainsFrom::none}, {"postfix", DomainsFrom::postfix}, {"sendmail", DomainsFrom::sendmail}});
        v.text("mta_config", c.local_domains.mta_config);
        v.choice("unreadable_domain_tables", c.local_domains.unreadable_tables,
                 {{"stop", UnreadableTables::stop}, {"skip", UnreadableTables::skip}});
        v.groups("trusted_groups", r.trusted_groups);
        v.flag("allow_sasl", r.allow_sasl);
        v.flag("allow_pop_before_smtp", r.allow_pop_before_smtp);
        v.duration("pop_window", r.pop_window, std::chrono::seconds(1));
        v.number("pop_ipv6_prefix", r.pop_ipv6_prefix, 32, 128);
        v.flag("auth_failure_disables_groups", r.auth_failure_disables_groups);
        v.duration("auth_failure_window", r.auth_failure_window, std::chrono::seconds(1));
        v.reply("reply", r.reply);
    });
}

// [limits]: the per-client limits, one subsection each.
template <class V>
void limits_schema(V& v, Config& c) {
    v.section("limits", [&] {
        auto& l = c.policy.limits;
        v.number("ipv4_prefix", l.ipv4_prefix, 8, 32);
        v.number("ipv6_prefix", l.ipv6_prefix, 16, 128);
        v.group("exempt_group", l.exempt);
        auto mode = [&](LimitMode& m) { v.choice("mode", m, {{"enforce", LimitMode::enforce}, {"warn", LimitMode::warn}}); };
        v.section("message_rate", [&] {
            v.limit("max", l.message_rate.max);
            v.duration("window", l.message_rate.window, std::chrono::minutes(1));
            v.choice("count", l.message_rate.count, {{"accepted", CountMode::accepted}, {"attempts", CountMode::attempts}});
            mode(l.message_rate.mode);
            v.reply("reply", l.message_rate.reply);
        });
        v.section("connections", [&] {
            v.limit("max", l.connections.max);
            mode(l.connections.mode);
            v.reply("reply", l.connections.reply);
        });
        v.section("unknown_recipients", [&] {
            v.limit("max", l.unknown_recipients.max);
            v.duration("window", l.unknown_recipients.window, std::chrono::seconds(1));
            v.duration("block_time", l.unknown_recipients.block_time, std::chrono::seconds(1));
            mode(l.unknown_recipients.mode);
            v.reply("reply", l.unknown_recipients.reply);
        });
        v.section("auth_failures", [&] {
            v.limit("max", l.auth_failures.max);
            v.duration("window", l.auth_failures.window, std::chrono::seconds(1));
            v.duration("block_time", l.auth_failures.block_time, std::chrono::seconds(1));
            mode(l.auth_failures.mode);
            v.reply("reply", l.auth_failures.reply);
            v.limit("account_networks", l.auth_failures.account_networks);
        });
        v.section("user_quotas", [&] {
            v.limit("messages_per_hour", l.user_quotas.defaults.messages_per_hour);
            v.limit("messages_per_day", l.user_quotas.defaults.messages_per_day);
            v.limit("recipients_per_day", l.user_quotas.defaults.recipients_per_day);
            v.text("overrides_file", l.user_quotas.overrides_file);
            mode(l.user_quotas.mode);
            v.reply("reply", l.user_quotas.reply);
        });
        v.section("compromised_accounts", [&] {
            auto& a = l.compromised_accounts;
            v.limit("max_networks", a.max_networks);
            v.duration("window", a.window, std::chrono::minutes(1));
            v.number("ipv4_prefix", a.ipv4_prefix, 8, 32);
            v.number("ipv6_prefix", a.ipv6_prefix, 16, 128);
            v.limit("quota_factor", a.quota_factor);
            v.list("command", a.command);
        });
        v.section("recipients", [&] {
            v.limit("max", l.recipients.max);
            mode(l.recipients.mode);
            v.reply("reply", l.recipients.reply);
        });
        v.section("failed_commands", [&] {
            v.limit("max", l.failed_commands.max);
            mode(l.failed_commands.mode);
            v.reply("reply", l.failed_commands.reply);
        });
        v.section("message_size", [&] {
            v.size_limit("max", l.message_size.max);
            mode(l.message_size.mode);
            v.reply("reply", l.message_size.reply);
        });
        v.section("hops", [&] {
            v.limit("max", l.hops.max);
            mode(l.hops.mode);
            v.reply("reply", l.hops.reply);
        });
    });
}

// [dns]: the resolver, and the checks that use it.
template <class V>
void dns_schema(V& v, Config& c) {
    v.section("dns", [&] {
        auto& r = c.dns;
        auto& d = c.policy.dns;
        v.list("servers", r.servers, check_host_port);
        v.duration("timeout", r.timeout, std::chrono::milliseconds(10));
        v.number("tries", r.tries, 1u, 10u);
        v.number("cache_max_entries", r.cache_max_entries, 0u, 10'000'000u);
        v.duration("cache_max_ttl", r.cache_max_ttl, std::chrono::seconds(0));
        v.duration("negative_ttl", r.negative_ttl, std::chrono::seconds(0));
        v.flag("require_sender_domain", d.require_sender_domain);
        v.flag("require_client_ptr", d.require_client_ptr);
        v.flag("require_forward_confirmed_ptr", d.require_forward_confirmed_ptr);
        v.groups("exempt_groups", d.exempt_groups);
        v.reply("sender_domain_reply", d.sender_domain_reply);
        v.reply("sender_null_mx_reply", d.sender_null_mx_reply);
        v.reply("sender_domain_tempfail_reply", d.sender_domain_tempfail);
        v.reply("ptr_reply", d.ptr_reply);
        v.reply("ptr_mismatch_reply", d.ptr_mismatch_reply);
        v.reply("ptr_tempfail_reply", d.ptr_tempfail);
    });
}

// [store]: where the counters live, and what happens when they cannot be reached.
template <class V>
void store_schema(V& v, Config& c) {
    v.section("store", [&] {
        auto& s = c.store;
        v.choice("type", s.type, {{"memory", StoreType::memory}, {"redis", StoreType::redis}});
        v.number("memory_max_clients", s.memory_max_clients, 100u, 100'000'000u);
        v.text("memory_snapshot", s.memory_snapshot, check_optional_absolute_path);
        v.choice("fail_mode", c.policy.store_fail_mode, {{"tempfail", StoreFailMode::tempfail}, {"open", StoreFailMode::open}});
        v.reply("failure_reply", c.policy.store_failure_reply);
        v.section("redis", [&] {
            auto& r = s.redis;
            v.choice("mode", r.mode, {{"single", RedisMode::single}, {"sentinel", RedisMode::sentinel}, {"cluster", RedisMode::cluster}});
            v.list("servers", r.servers, check_host_port);
            v.text("sentinel_master", r.sentinel_master);
            v.text("username", r.username);
            v.secret("password", r.password);
            v.text("key_prefix", r.key_prefix);
            v.duration("connect_timeout", r.connect_timeout, std::chrono::milliseconds(1));
            v.duration("command_timeout", r.command_timeout, std::chrono::milliseconds(1));
            v.number("pool_size", r.pool_size, 1u, 1024u);
            v.duration("connection_lease", r.connection_lease, std::chrono::seconds(5));
        });
    });
}

// [delivery]: the relay client.
template <class V>
void delivery_schema(V& v, Config& c) {
    v.section("delivery", [&] {
        auto& d = c.delivery;
        v.text("listen", d.listen, check_listener);
        v.groups_or_networks("allowed_clients", d.allowed_clients);
        v.text("admin", d.admin, check_admin_socket);
        v.text("metrics", d.metrics, check_optional_ip_port);
        v.text("queue_dir", d.queue_dir);
        v.choice("route", d.route, {{"mx", DeliveryRoute::mx}, {"smarthost", DeliveryRoute::smarthost}});
        v.list("smarthosts", d.smarthosts, check_host_port);
        v.number("mx_port", d.mx_port, std::uint16_t{1}, std::uint16_t{65535});
        v.choice("auth", d.auth, {{"none", SmarthostAuth::none}, {"smtp-auth", SmarthostAuth::smtp_auth},
                                  {"pop-before-smtp", SmarthostAuth::pop_before_smtp}, {"oauth2", SmarthostAuth::oauth2}});
        v.text("username", d.username);
        v.secret("password", d.password);
        v.text("pop_server", d.pop_server);
        v.choice("pop_method", d.pop_method, {{"user", PopLoginMethod::user}, {"apop", PopLoginMethod::apop}});
        v.duration("pop_login_interval", d.pop_login_interval, std::chrono::seconds(0));
        v.choice("starttls", d.starttls, {{"opportunistic", StartTlsPolicy::opportunistic},
                                          {"required", StartTlsPolicy::required}, {"off", StartTlsPolicy::off}});
        v.flag("tls_verify", d.tls_verify);
        v.flag("allow_plaintext_auth", d.allow_plaintext_auth);
        v.text("tls_ca_file", d.tls_ca_file);
        v.text("tls_client_cert", d.tls_client_cert);
        v.text("tls_client_key", d.tls_client_key);
        v.text("helo_name", d.helo_name);
        v.text("origin", d.origin, check_mail_domain);
        v.number("threads", d.threads, 1u, 256u);
        v.duration("connect_timeout", d.connect_timeout, std::chrono::seconds(1));
        v.duration("command_timeout", d.command_timeout, std::chrono::seconds(1));
        v.duration("attempt_timeout", d.attempt_timeout, std::chrono::seconds(1));
        v.duration("retry_interval", d.retry_interval, std::chrono::seconds(1));
        v.duration("max_retry_interval", d.max_retry_interval, std::chrono::seconds(1));
        v.duration("warning_delay", d.warning_delay, std::chrono::seconds(0));
        v.duration("message_lifetime", d.message_lifetime, std::chrono::seconds(1));
        v.text("report_language", d.report_language);
        v.text_map("report_languages", d.report_languages);
        v.text("reports_dir", d.reports_dir);
        v.size("bounce_size_limit", d.bounce_size_limit, 0);
        v.size("max_message_size", d.max_message_size, 1024);
        v.number("max_queue_messages", d.max_queue_messages, 1u, 100'000'000u);
        v.size("queue_min_free", d.queue_min_free, 0);
        v.section("oauth2", [&] {
            auto& o = d.oauth2;
            v.text("provider", o.provider, check_oauth_provider);
            v.text("tenant", o.tenant);
            v.text("token_endpoint", o.token_endpoint);
            v.text("device_endpoint", o.device_endpoint);
            v.text("client_id", o.client_id);
            v.secret("client_secret", o.client_secret);
            v.text("client_secret_file", o.client_secret_file);
            v.text("scope", o.scope);
            v.choice("grant", o.grant, {{"refresh_token", OAuthGrant::refresh_token},
                                        {"client_credentials", OAuthGrant::client_credentials}});
            v.text("token_store", o.token_store);
            v.text("ca_file", o.ca_file);
            v.duration("refresh_margin", o.refresh_margin, std::chrono::seconds(0));
            v.duration("idle_refresh", o.idle_refresh, std::chrono::minutes(1));
            v.duration("timeout", o.timeout, std::chrono::seconds(1));
        });
    });
}

// The whole file, section by section, in the order it is rendered.
template <class V>
void config_schema(V& v, Config& c) {
    listen_schema(v, c);
    v.section("daemon", [&] {
        v.text("user", c.daemon.user);
        v.text("group", c.daemon.group);
        v.text("pid_file", c.daemon.pid_file);
    });
    v.ip_groups("ip_groups", c.ip_groups);
    relay_schema(v, c);
    limits_schema(v, c);
    dns_schema(v, c);
    v.section("pop_before_smtp", [&] {
        v.text("log_file", c.pop_before_smtp.log_file);
        v.list("log_patterns", c.pop_before_smtp.log_patterns, check_login_pattern);
    });
    v.section("auth_events", [&] {
        v.text("dovecot_policy", c.auth_events.dovecot_policy, check_optional_loopback_ip_port);
        v.secret("dovecot_api_header", c.auth_events.dovecot_api_header);
        v.list("log_files", c.auth_events.log_files);
        v.list("log_patterns", c.auth_events.log_patterns, check_login_pattern);
    });
    store_schema(v, c);
    delivery_schema(v, c);
    v.section("alerts", [&] {
        auto& a = c.alerts;
        v.list("recipients", a.recipients, check_mail_address);
        v.list("events", a.events, check_alert_event);
        v.text("sender", a.sender);
        v.text("submit", a.submit, check_ip_port);
        v.duration("per_client_interval", a.per_client_interval, std::chrono::seconds(1));
        v.number("max_per_hour", a.max_per_hour, 1u, 100000u);
    });
    v.section("log", [&] {
        v.text("level", c.log.level, check_log_level);
        v.list("targets", c.log.targets);
        v.text("security_log", c.log.security_log);
        v.flag("connection_log", c.log.connection_log);
        v.text("connection_log_file", c.log.connection_log_file);
    });
}

}  // namespace relayguard
