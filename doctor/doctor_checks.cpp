// The doctor's checks; see the header. Each check names the parameter as
// Postfix spells it, so the admin can grep main.cf for it.
#include "doctor/doctor_checks.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <optional>
#include <sstream>

#include "policy/domain_set.h"

namespace relayguard {

namespace {

std::string trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos) return "";
    auto e = s.find_last_not_of(" \t");
    return std::string(s.substr(b, e - b + 1));
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string postconf_e(const PostfixConfig& pf, const std::string& name, const std::string& value) {
    return "postconf" + (pf.dir.empty() ? std::string() : " -c " + shell_quoted(pf.dir)) + " -e " +
           shell_quoted(name + " = " + value);
}

std::string postconf_p(const PostfixConfig& pf, const std::string& service, const std::string& name,
                       const std::string& value) {
    return "postconf" + (pf.dir.empty() ? std::string() : " -c " + shell_quoted(pf.dir)) + " -P " +
           shell_quoted(service + "/" + name + "=" + value);
}

std::string joined(const std::vector<std::string>& items, const char* sep = ", ") {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
    return out;
}

long seconds_of(Duration d) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return static_cast<long>((ms + 999) / 1000);
}

std::optional<long> number(const std::string& text) {
    long v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return v;
}

// A milter or policy-service item: its socket, and the per-item settings
// Postfix 3.0 allows in braces: "{ inet:host:port, default_action = accept }".
struct ServiceItem {
    std::string socket;
    std::map<std::string, std::string> attrs;
};

ServiceItem parse_item(std::string_view text) {
    ServiceItem item;
    std::string t = trim(text);
    if (t.empty() || t.front() != '{') {
        item.socket = t;
        return item;
    }
    t = t.substr(1, t.size() - (t.back() == '}' ? 2 : 1));
    std::stringstream parts(t);
    std::string part;
    bool first = true;
    while (std::getline(parts, part, ',')) {
        if (first) {
            item.socket = trim(part);
            first = false;
            continue;
        }
        auto eq = part.find('=');
        if (eq != std::string::npos) item.attrs[trim(part.substr(0, eq))] = trim(part.substr(eq + 1));
    }
    return item;
}

bool loopback_host(std::string host) {
    if (!host.empty() && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

bool is_yes(const std::string& v) { return lower(v) == "yes" || lower(v) == "true"; }

bool has_word(const std::string& list, const std::string& word) {
    for (const auto& w : split_postfix_list(list)) {
        if (w == word) return true;
    }
    return false;
}

// "127.0.0.1:10025", "[::1]:10025", "localhost:10025": a service only this host reaches.
bool loopback_service(const std::string& name) {
    auto colon = name.rfind(':');
    return colon != std::string::npos && loopback_host(name.substr(0, colon));
}

// A list as one master.cf -o value: postconf -P takes no white space, and
// Postfix reads commas alone as separators.
std::string master_value(const std::string& list) { return joined(split_postfix_list(list), ","); }

// The restrictions that end a relay list in a refusal when nothing before
// them permitted the mail.
bool closes_relay(const std::string& t) {
    return t == "reject_unauth_destination" || t == "defer_unauth_destination" || t == "reject" || t == "defer" ||
           t == "defer_if_permit" || t == "check_relay_domains";
}

// Where relayguard's policy service sits in a restriction list.
struct PolicySpot {
    std::string list;  // the parameter
    std::size_t index = 0;
    ServiceItem item;
    std::vector<std::string> permits_before;
};

std::optional<PolicySpot> find_policy(const std::string& list_name, const std::string& value,
                                      const std::string& ours) {
    auto tokens = split_postfix_list(value);
    std::vector<std::string> permits;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i].rfind("permit", 0) == 0) permits.push_back(tokens[i]);
        if (tokens[i] != "check_policy_service" || i + 1 >= tokens.size()) continue;
        auto item = parse_item(tokens[i + 1]);
        if (same_socket(item.socket, ours)) return PolicySpot{list_name, i, item, permits};
    }
    return std::nullopt;
}

// A restriction list with relayguard's policy service in front: after
// reject_unlisted_recipient (Postfix refuses unknown users itself, and the
// milter reports those refusals to the harvest guard), before every permit.
std::string wired_list(const std::string& current, const std::string& ours) {
    auto tokens = split_postfix_list(current);
    std::vector<std::string> rest;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] == "check_policy_service" && i + 1 < tokens.size() &&
            same_socket(parse_item(tokens[i + 1]).socket, ours)) {
            ++i;
            continue;
        }
        if (tokens[i] == "reject_unlisted_recipient") continue;
        rest.push_back(tokens[i]);
    }
    bool closes = std::any_of(rest.begin(), rest.end(), closes_relay);
    std::vector<std::string> out{"reject_unlisted_recipient", "check_policy_service " + ours};
    out.insert(out.end(), rest.begin(), rest.end());
    if (!closes) out.push_back("reject_unauth_destination");
    return joined(out);
}


// Whether a network of Postfix's mynetworks lies inside a trusted group.
bool trusted(const Cidr& net, const std::vector<IpGroup>& groups) {
    for (const auto& g : groups) {
        for (const auto& n : g.networks) {
            if (n.prefix() <= net.prefix() && n.contains(net.network())) return true;
        }
    }
    return false;
}

std::string config_name(const Config& c) { return c.source.empty() ? std::string("relayguard.toml") : c.source; }

void check_domains(std::vector<Finding>& out, const Config& config, const MtaDomains* domains, const char* mta) {
    const auto& src = config.local_domains;
    const bool from_mta = (src.from == DomainsFrom::postfix && std::string(mta) == "postfix") ||
                          (src.from == DomainsFrom::sendmail && std::string(mta) == "sendmail");
    if (domains == nullptr) return;
    if (from_mta) {
        for (const auto& u : domains->unreadable) {
            bool stop = src.unreadable_tables == UnreadableTables::stop;
            out.push_back({stop ? Severity::error : Severity::warning, "domain-table-unreadable",
                           "relayguard cannot list " + u +
                               (stop ? ": with relay.unreadable_domain_tables = \"stop\" it will not start"
                                     : ": mail to its domains is refused as relaying"),
                           "list its domains in relay.local_domains in " + config_name(config) +
                               " and set relay.unreadable_domain_tables = \"skip\"",
                           ""});
        }
        return;
    }
    DomainSet mta_set;
    std::vector<std::string> missing;
    for (const auto& d : domains->domains) {
        mta_set.add(d.name, d.with_subdomains);
        std::string probe = d.name.front() == '.' ? "a" + d.name : d.name;
        if (!config.policy.relay.local_domains.contains(probe)) missing.push_back(d.name);
    }
    if (!missing.empty()) {
        out.push_back({Severity::error, "domain-missing",
                       std::string(mta) + " receives mail for " + joined(missing) +
                           ", which relayguard does not count as local: mail to them from outside is refused "
                           "with 554 as relaying",
                       "set relay.local_domains_from = \"" + std::string(mta) + "\" in " + config_name(config) +
                           " (or list them in relay.local_domains)",
                       ""});
    }
    std::vector<std::string> unknown;
    for (const auto& d : src.domains) {
        std::string probe = !d.empty() && d.front() == '.' ? "a" + d : d;
        if (!mta_set.contains(probe)) unknown.push_back(d);
    }
    if (!unknown.empty() && domains->unreadable.empty()) {
        out.push_back({Severity::warning, "domain-unknown-to-mta",
                       "relayguard counts " + joined(unknown) + " as local, but " + mta +
                           " does not receive mail for it: one of the two lists is out of date",
                       "remove it from relay.local_domains in " + config_name(config) + ", or add it to " + mta,
                       ""});
    }
}

void check_limit(std::vector<Finding>& out, const PostfixConfig& pf, const Config& config, const char* key,
                 std::optional<std::uint64_t> ours, const char* param, const char* effect) {
    if (!ours) return;
    auto theirs = number(pf.value(param));
    if (!theirs || *theirs <= 0 || *ours <= static_cast<std::uint64_t>(*theirs)) return;
    out.push_back({Severity::warning, "limit-above-postfix",
                   std::string(key) + " = " + std::to_string(*ours) + " is above Postfix's " + param + " = " +
                       std::to_string(*theirs) + ": " + effect + ", so relayguard's limit never acts",
                   "set " + std::string(key) + " to at most " + std::to_string(*theirs) + " in " +
                       config_name(config) + ", or \"off\"",
                   ""});
}

}  // namespace

std::string shell_quoted(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

long postfix_seconds(std::string_view value) {
    std::string v = trim(value);
    if (v.empty()) return -1;
    long unit = 1;
    char last = static_cast<char>(std::tolower(static_cast<unsigned char>(v.back())));
    if (std::isalpha(static_cast<unsigned char>(last))) {
        static const std::map<char, long> units{{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
        auto u = units.find(last);
        if (u == units.end()) return -1;
        unit = u->second;
        v.pop_back();
    }
    auto n = number(v);
    return n ? *n * unit : -1;
}

bool same_socket(std::string_view postfix_name, std::string_view relayguard_name) {
    std::string a = trim(postfix_name), b = trim(relayguard_name);
    if (b.rfind("unix:", 0) == 0) {
        std::string path = b.substr(5);
        std::string theirs = a.rfind("unix:", 0) == 0 ? a.substr(5) : a;
        if (theirs == path) return true;
        // Postfix names chrooted sockets relative to its queue directory.
        return !theirs.empty() && theirs.front() != '/' && path.size() > theirs.size() &&
               path.compare(path.size() - theirs.size() - 1, std::string::npos, "/" + theirs) == 0;
    }
    auto host_port = [](std::string s) -> std::pair<std::string, std::string> {
        if (s.rfind("inet:", 0) == 0) s = s.substr(5);
        auto colon = s.rfind(':');
        if (colon == std::string::npos) return {"", ""};
        return {s.substr(0, colon), s.substr(colon + 1)};
    };
    auto [ha, pa] = host_port(a);
    auto [hb, pb] = host_port(b);
    if (pa.empty() || pa != pb) return false;
    return lower(ha) == lower(hb) || (loopback_host(ha) && loopback_host(hb));
}

bool same_sendmail_socket(std::string_view sendmail_name, std::string_view relayguard_name) {
    std::string s = trim(sendmail_name);
    for (const char* local : {"local:", "unix:"}) {
        if (s.rfind(local, 0) == 0) return same_socket("unix:" + s.substr(std::string(local).size()), relayguard_name);
    }
    if (!s.empty() && s.front() == '/') return same_socket("unix:" + s, relayguard_name);
    for (const char* inet : {"inet:", "inet6:"}) {
        if (s.rfind(inet, 0) != 0) continue;
        std::string rest = s.substr(std::string(inet).size());
        auto at = rest.find('@');
        if (at == std::string::npos) return false;
        return same_socket("inet:" + rest.substr(at + 1) + ":" + rest.substr(0, at), relayguard_name);
    }
    return false;
}

std::vector<Finding> check_postfix(const PostfixConfig& pf, const Config& config, const MtaDomains* domains) {
    std::vector<Finding> out;
    const auto& listen = config.listen;
    const long stage = seconds_of(listen.stage_timeout);
    const std::string stage_text = "listen.stage_timeout = " + std::to_string(stage) + "s";

    // The milter.
    std::optional<ServiceItem> milter;
    std::vector<std::string> milter_items;
    for (const auto& raw : split_postfix_list(pf.value("smtpd_milters"))) {
        milter_items.push_back(raw);
        auto item = parse_item(raw);
        if (!listen.milter.empty() && same_socket(item.socket, listen.milter)) milter = item;
    }
    // The policy service, in the lists that can open relay.
    std::optional<PolicySpot> policy;
    if (!listen.policy.empty()) {
        for (const char* list : {"smtpd_relay_restrictions", "smtpd_recipient_restrictions"}) {
            if (!policy) policy = find_policy(list, pf.value(list), listen.policy);
        }
    }

    if (!listen.milter.empty() && !milter) {
        auto items = milter_items;
        items.push_back(listen.milter);
        out.push_back({policy ? Severity::warning : Severity::error, "milter-missing",
                       "relayguard's milter (" + listen.milter +
                           ") is not in smtpd_milters: connection floods, directory harvest, mail loops and "
                           "unknown commands go unchecked",
                       "add it to smtpd_milters", postconf_e(pf, "smtpd_milters", joined(items))});
    }
    if (milter) {
        auto action = milter->attrs.count("default_action") ? milter->attrs["default_action"]
                                                             : pf.value("milter_default_action");
        if (lower(action) == "accept") {
            bool per_item = milter->attrs.count("default_action") > 0;
            out.push_back({Severity::error, "milter-fails-open",
                           std::string(per_item ? "smtpd_milters gives relayguard's milter default_action = accept"
                                                : "milter_default_action = accept") +
                               ": while relayguard is down or slow, Postfix takes mail unchecked",
                           per_item ? "remove default_action = accept from relayguard's entry in smtpd_milters"
                                    : "tempfail: clients get a 4xx and retry",
                           per_item ? "" : postconf_e(pf, "milter_default_action", "tempfail")});
        }
        for (const auto& [param, attr, fallback] :
             {std::tuple{"milter_command_timeout", "command_timeout", 30L},
              std::tuple{"milter_content_timeout", "content_timeout", 300L}}) {
            std::string text = milter->attrs.count(attr) ? milter->attrs[attr] : pf.value(param);
            long waits = text.empty() ? fallback : postfix_seconds(text);
            if (waits < 0 || waits > stage) continue;
            out.push_back({Severity::warning, "milter-timeout",
                           std::string(param) + " = " + text + " is not longer than relayguard's " + stage_text +
                               ": Postfix gives up on a slow answer and applies milter_default_action",
                           "raise it above " + std::to_string(stage) + "s",
                           postconf_e(pf, param, std::to_string(2 * stage) + "s")});
        }
    }

    if (!listen.policy.empty() && !policy) {
        out.push_back({milter ? Severity::warning : Severity::error, "policy-missing",
                       "relayguard's policy service (" + listen.policy +
                           ") is in neither smtpd_relay_restrictions nor smtpd_recipient_restrictions: relayguard "
                           "cannot let its trusted groups, AUTH users and POP-before-SMTP clients relay" +
                           (milter ? std::string() : ", and nothing of it is asked at all"),
                       "put check_policy_service first in smtpd_relay_restrictions",
                       postconf_e(pf, "smtpd_relay_restrictions",
                                  wired_list(pf.value("smtpd_relay_restrictions"), listen.policy))});
    }
    if (policy && !policy->permits_before.empty()) {
        out.push_back({Severity::error, "permit-before-policy",
                       joined(policy->permits_before) + " come(s) before check_policy_service in " + policy->list +
                           ": every client it permits skips relayguard's checks there (relay rules, limits, "
                           "quotas, blocks)",
                       "put check_policy_service before every permit_*",
                       postconf_e(pf, policy->list, wired_list(pf.value(policy->list), listen.policy))});
    }
    if (policy) {
        auto action = policy->item.attrs.count("default_action") ? policy->item.attrs["default_action"]
                                                                 : pf.value("smtpd_policy_service_default_action");
        if (!action.empty() && action[0] != '4' && action[0] != '5') {
            out.push_back({Severity::error, "policy-fails-open",
                           "smtpd_policy_service_default_action = " + action +
                               ": while relayguard is down, Postfix goes on as if it had answered",
                           "a 4xx: clients retry later",
                           policy->item.attrs.count("default_action")
                               ? ""
                               : postconf_e(pf, "smtpd_policy_service_default_action",
                                            "451 4.3.5 Policy service unavailable; try again later")});
        }
        std::string text = policy->item.attrs.count("timeout") ? policy->item.attrs["timeout"]
                                                               : pf.value("smtpd_policy_service_timeout");
        long waits = text.empty() ? 100 : postfix_seconds(text);
        if (waits >= 0 && waits <= stage) {
            out.push_back({Severity::warning, "policy-timeout",
                           "smtpd_policy_service_timeout = " + text + " is not longer than relayguard's " +
                               stage_text + ": Postfix gives up on a slow answer",
                           "raise it above " + std::to_string(stage) + "s",
                           postconf_e(pf, "smtpd_policy_service_timeout", std::to_string(2 * stage) + "s")});
        }
    }

    // Relay must end in a refusal.
    bool closes = false;
    for (const char* list : {"smtpd_relay_restrictions", "smtpd_recipient_restrictions"}) {
        for (const auto& t : split_postfix_list(pf.value(list))) {
            if (closes_relay(t)) closes = true;
        }
    }
    if (!closes) {
        out.push_back({Severity::error, "no-unauth-destination",
                       "neither smtpd_relay_restrictions nor smtpd_recipient_restrictions holds "
                       "reject_unauth_destination: nothing refuses relaying when no rule does",
                       "end smtpd_relay_restrictions with reject_unauth_destination",
                       postconf_e(pf, "smtpd_relay_restrictions",
                                  listen.policy.empty() ? "permit_mynetworks, permit_sasl_authenticated, "
                                                          "reject_unauth_destination"
                                                        : wired_list(pf.value("smtpd_relay_restrictions"),
                                                                     listen.policy))});
    }

    // mynetworks that relayguard does not trust: once its policy service
    // comes before permit_mynetworks, their relaying is refused.
    if (!listen.policy.empty() && config.policy.relay.mode == RelayMode::restricted) {
        std::vector<std::string> untrusted;
        for (auto text : split_postfix_list(pf.value("mynetworks"))) {
            // "[::1]/128" is Postfix's spelling of an IPv6 network.
            text.erase(std::remove(text.begin(), text.end(), '['), text.end());
            text.erase(std::remove(text.begin(), text.end(), ']'), text.end());
            if (lower(text).rfind("::ffff:", 0) == 0) continue;  // IPv4-mapped: relayguard folds these to IPv4
            auto net = Cidr::parse(text);  // a table or a file is not read here
            if (net && !trusted(*net, config.policy.relay.trusted_groups)) untrusted.push_back(text);
        }
        if (!untrusted.empty()) {
            std::string list;
            for (const auto& u : untrusted) list += (list.empty() ? "" : ", ") + ("\"" + u + "\"");
            out.push_back({Severity::warning, "mynetworks-not-trusted",
                           "Postfix's mynetworks has " + joined(untrusted) +
                               ", which no relayguard trusted group holds: relayguard answers their relay "
                               "attempts with 554 before permit_mynetworks is reached",
                           "in " + config_name(config) + ": [ip_groups] mynetworks = [" + list +
                               "], and \"mynetworks\" in relay.trusted_groups",
                           ""});
        }
    }

    // The SMTP services of master.cf.
    for (const auto& s : pf.services) {
        if (s.command != "smtpd" || (s.type != "inet" && s.type != "pass")) continue;
        const std::string key = s.name + "/" + s.type;
        auto overridden = [&](const char* param) {
            auto o = pf.overrides.find(key);
            return o != pf.overrides.end() && o->second.count(param) > 0;
        };
        // A content filter's re-injection port (on loopback, with its own
        // content_filter or receive_override_options) is meant to skip the
        // checks its mail has already passed.
        const bool reinjection = loopback_service(s.name) &&
                                 (overridden("content_filter") || overridden("receive_override_options"));
        if (milter && !reinjection) {
            auto value = pf.value("smtpd_milters", key);
            bool has = false;
            for (const auto& raw : split_postfix_list(value)) {
                has = has || same_socket(parse_item(raw).socket, listen.milter);
            }
            bool switched_off = has_word(pf.value("receive_override_options", key), "no_milters");
            if (!has || switched_off) {
                out.push_back({Severity::warning, "service-without-milter",
                               "master.cf service " + key +
                                   (switched_off ? " has no_milters in its receive_override_options"
                                                 : " overrides smtpd_milters without relayguard's milter") +
                                   ": mail through it is not checked by the milter",
                               switched_off ? "remove no_milters from its -o receive_override_options"
                                            : "add relayguard's milter to its -o smtpd_milters",
                               switched_off || value.find('{') != std::string::npos
                                   ? ""
                                   : postconf_p(pf, key, "smtpd_milters",
                                                master_value(value.empty() ? listen.milter
                                                                           : value + ", " + listen.milter))});
            }
        }
        // A service with restriction lists of its own (Debian's submission
        // template: permit_sasl_authenticated, reject) skips main.cf's.
        const char* own_list = overridden("smtpd_relay_restrictions")     ? "smtpd_relay_restrictions"
                               : overridden("smtpd_recipient_restrictions") ? "smtpd_recipient_restrictions"
                                                                            : nullptr;
        if (policy && own_list && !reinjection) {
            std::optional<PolicySpot> here;
            for (const char* list : {"smtpd_relay_restrictions", "smtpd_recipient_restrictions"}) {
                if (!here) here = find_policy(list, pf.value(list, key), listen.policy);
            }
            if (!here || !here->permits_before.empty()) {
                const std::string list = here ? here->list : own_list;
                const std::string value = pf.value(list, key);
                out.push_back({here ? Severity::error : Severity::warning,
                               here ? "permit-before-policy" : "service-without-policy",
                               "master.cf service " + key + " sets its own " + list +
                                   (here ? " with " + joined(here->permits_before) + " before check_policy_service"
                                         : " without relayguard's policy service") +
                                   ": relayguard's relay rules, quotas and blocks are not asked there",
                               "put check_policy_service first in its -o " + list,
                               value.find('{') != std::string::npos
                                   ? ""
                                   : postconf_p(pf, key, list, master_value(wired_list(value, listen.policy)))});
            }
        }
        bool auth = is_yes(pf.value("smtpd_sasl_auth_enable", key));
        bool tls_first = is_yes(pf.value("smtpd_tls_auth_only", key)) ||
                         lower(pf.value("smtpd_tls_security_level", key)) == "encrypt" ||
                         is_yes(pf.value("smtpd_tls_wrappermode", key)) || is_yes(pf.value("smtpd_enforce_tls", key));
        if (auth && !tls_first) {
            out.push_back({Severity::error, "auth-without-tls",
                           "master.cf service " + key +
                               " offers SMTP AUTH before STARTTLS (smtpd_tls_auth_only = no): passwords can cross "
                               "the wire in clear",
                           "offer AUTH only after STARTTLS (Postfix then needs smtpd_tls_cert_file and "
                           "smtpd_tls_key_file)",
                           overridden("smtpd_sasl_auth_enable") ? postconf_p(pf, key, "smtpd_tls_auth_only", "yes")
                                                                : postconf_e(pf, "smtpd_tls_auth_only", "yes")});
        }
    }

    check_domains(out, config, domains, "postfix");

    const auto& l = config.policy.limits;
    auto widen = [](const auto& m) -> std::optional<std::uint64_t> {
        if (!m) return std::nullopt;
        return static_cast<std::uint64_t>(*m);
    };
    check_limit(out, pf, config, "limits.failed_commands.max", widen(l.failed_commands.max), "smtpd_hard_error_limit",
                "Postfix hangs up first");
    check_limit(out, pf, config, "limits.connections.max", widen(l.connections.max),
                "smtpd_client_connection_count_limit", "Postfix refuses the connection first");
    check_limit(out, pf, config, "limits.recipients.max", widen(l.recipients.max), "smtpd_recipient_limit",
                "Postfix refuses the recipient first");
    check_limit(out, pf, config, "limits.message_size.max", widen(l.message_size.max), "message_size_limit",
                "Postfix refuses the message first");
    check_limit(out, pf, config, "limits.hops.max", widen(l.hops.max), "hopcount_limit",
                "Postfix refuses the message first");
    return out;
}

std::vector<Finding> check_sendmail(std::string_view cf, const Config& config, const MtaDomains* domains) {
    std::vector<Finding> out;
    const auto& milter_socket = config.listen.milter;
    std::string name, flags, timeouts, enabled;
    bool found = false;
    std::istringstream lines{std::string(cf)};
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind("O InputMailFilters=", 0) == 0) enabled = line.substr(19);
        if (line.empty() || line[0] != 'X') continue;
        std::stringstream parts(line.substr(1));
        std::string part, this_name, socket, f, t;
        std::getline(parts, this_name, ',');
        while (std::getline(parts, part, ',')) {
            auto p = trim(part);
            if (p.rfind("S=", 0) == 0) socket = p.substr(2);
            if (p.rfind("F=", 0) == 0) f = p.substr(2);
            if (p.rfind("T=", 0) == 0) t = p.substr(2);
        }
        if (!milter_socket.empty() && same_sendmail_socket(socket, milter_socket)) {
            found = true;
            name = trim(this_name);
            flags = f;
            timeouts = t;
        }
    }
    const std::string mc_line = "INPUT_MAIL_FILTER(`relayguard', `S=inet:8893@127.0.0.1, F=T, "
                                "T=C:10s;S:20s;R:20s;E:60s') (contrib/sendmail/relayguard.mc, with relayguard's "
                                "port), then rebuild sendmail.cf";
    if (!found) {
        out.push_back({Severity::error, "milter-missing",
                       "sendmail.cf defines no mail filter at relayguard's milter (" + milter_socket +
                           "): Sendmail asks relayguard nothing",
                       "add to sendmail.mc: " + mc_line, ""});
        check_domains(out, config, domains, "sendmail");
        return out;
    }
    if (flags.find('T') == std::string::npos && flags.find('R') == std::string::npos) {
        out.push_back({Severity::error, "milter-fails-open",
                       "the mail filter " + name + " has no F=T or F=R: while relayguard is down or slow, "
                       "Sendmail takes mail unchecked",
                       "set F=T in its INPUT_MAIL_FILTER line in sendmail.mc and rebuild sendmail.cf", ""});
    }
    std::vector<std::string> on;
    std::stringstream names(enabled);
    std::string n;
    while (std::getline(names, n, ',')) on.push_back(trim(n));
    if (std::find(on.begin(), on.end(), name) == on.end()) {
        out.push_back({Severity::error, "milter-not-enabled",
                       "the mail filter " + name + " is defined but not in InputMailFilters: Sendmail never asks it",
                       "define it with INPUT_MAIL_FILTER (not MAIL_FILTER) in sendmail.mc and rebuild sendmail.cf",
                       ""});
    }
    // Sendmail waits 10 s for a reply unless T=R: says otherwise.
    long read = 10;
    std::stringstream ts(timeouts);
    std::string t;
    while (std::getline(ts, t, ';')) {
        if (t.rfind("R:", 0) == 0) read = postfix_seconds(t.substr(2));
    }
    const long stage = seconds_of(config.listen.stage_timeout);
    if (read >= 0 && read <= stage) {
        out.push_back({Severity::warning, "milter-timeout",
                       "the mail filter " + name + " waits " + std::to_string(read) +
                           " s for a reply (T=R:), not longer than relayguard's listen.stage_timeout = " +
                           std::to_string(stage) + "s: Sendmail gives up on a slow answer",
                       "set T=...;R:" + std::to_string(2 * stage) + "s in its INPUT_MAIL_FILTER line", ""});
    }
    check_domains(out, config, domains, "sendmail");
    return out;
}

}  // namespace relayguard
