// Reading, validating and printing the configuration. The schema itself is
// in config_schema.h; this file holds the two walkers over it (a reader that
// records file:line:key errors and a renderer) and the checks that span
// several keys.
#include "conf/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <optional>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "conf/config_schema.h"
#include "conf/user_quota_file.h"
#include "common/base/units.h"

namespace relayguard {

std::string ConfigError::to_string() const {
    std::string out = file;
    if (line > 0) out += ":" + std::to_string(line);
    out += ": ";
    if (!key.empty()) out += "key '" + key + "': ";
    return out + message;
}

namespace {

Status fail(std::string why) { return Status::failure(std::move(why)); }

Status check_unix_path(const std::string& v) {
    if (v.size() > 5 && v[5] == '/') return Done{};
    return fail("expected unix:/absolute/path");
}

}  // namespace

Status check_host_port(const std::string& v) {
    if (v.rfind("unix:", 0) == 0) return check_unix_path(v);
    auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0) return fail("expected HOST:PORT");
    std::string port = v.substr(colon + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(port) == 0 || std::stoul(port) > 65535) {
        return fail("expected a port between 1 and 65535 after the last ':'");
    }
    return Done{};
}

Status check_listener(const std::string& v) {
    if (v.empty()) return Done{};
    if (v.rfind("unix:", 0) == 0) return check_unix_path(v);
    if (v.rfind("inet:", 0) == 0) return check_host_port(v.substr(5));
    return fail("expected \"inet:HOST:PORT\", \"unix:/PATH\" or \"\" (off)");
}

Status check_socket_mode(const std::string& v) {
    if (v.size() < 3 || v.size() > 4 || v.find_first_not_of("01234567") != std::string::npos) {
        return fail("expected an octal mode such as \"0660\"");
    }
    if (std::stoul(v, nullptr, 8) & 0007) return fail("unix sockets must not be open to every user: clear the last digit");
    return Done{};
}

Status check_admin_socket(const std::string& v) {
    // No TCP: whoever reaches the admin socket may open relay windows.
    if (v.empty() || (v.rfind("unix:", 0) == 0 && v.size() > 5 && v[5] == '/')) return Done{};
    return fail("the admin socket must be a unix socket, \"unix:/PATH\", or \"\" (off)");
}

Status check_login_pattern(const std::string& v) {
    auto compiled = LoginPattern::compile(v);
    if (!compiled) return fail(compiled.error());
    return Done{};
}

Status check_log_level(const std::string& v) {
    static const std::set<std::string> levels{"trace", "debug", "info", "warning", "error", "critical", "off"};
    if (levels.count(v)) return Done{};
    return fail("expected one of trace, debug, info, warning, error, critical, off");
}

Status check_alert_event(const std::string& v) {
    if (alert_event_from(v)) return Done{};
    return fail("expected harvest_block, rate_limit, store_lost, login_block, account_attack or account_compromised");
}

Status check_oauth_provider(const std::string& v) {
    if (v.empty() || v == "microsoft365" || v == "google") return Done{};
    return fail("expected \"microsoft365\", \"google\", or \"\" with token_endpoint and scope set");
}

Status check_mail_address(const std::string& v) {
    auto at = v.rfind('@');
    if (at == std::string::npos || at == 0 || at + 1 == v.size()) return fail("expected an address local@domain");
    for (char c : v) {
        if (static_cast<unsigned char>(c) <= ' ' || c == '<' || c == '>' || c == 0x7f) {
            return fail("expected an address local@domain");
        }
    }
    return Done{};
}

Status check_optional_absolute_path(const std::string& v) {
    if (v.empty() || v.front() == '/') return Done{};
    return fail("expected an absolute path (or \"\" for none)");
}

// A mail domain for delivery.origin: letters, digits, hyphens and dots, at
// least one dot ("" = found at run time).
Status check_mail_domain(const std::string& v) {
    if (v.empty()) return Done{};
    bool dot = false;
    for (char c : v) {
        dot |= c == '.';
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') {
            return fail("expected a domain such as example.org");
        }
    }
    if (!dot || v.front() == '.' || v.back() == '.') return fail("expected a fully qualified domain such as example.org");
    return Done{};
}

Status check_ip_port(const std::string& v) {
    if (auto hp = check_host_port(v); !hp) return hp;
    if (v.rfind("unix:", 0) == 0) return fail("expected IP:PORT");
    std::string host = v.substr(0, v.rfind(':'));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (IpAddress::parse(host)) return Done{};
    return fail("expected an IP address (no host name) before the port");
}

Status check_optional_ip_port(const std::string& v) { return v.empty() ? Status(Done{}) : check_ip_port(v); }

Status check_optional_loopback_ip_port(const std::string& v) {
    if (v.empty()) return Done{};
    if (auto checked = check_ip_port(v); !checked) return checked;
    std::string host = v.substr(0, v.rfind(':'));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (Cidr::parse("127.0.0.0/8")->contains(*IpAddress::parse(host)) || host == "::1") return Done{};
    return fail("must be a loopback address (127.0.0.1, [::1]): whoever reaches it reports logins");
}

// "Name: value", as Dovecot's auth_policy_server_api_header is written.
Status check_header_line(const std::string& v) {
    auto colon = v.find(':');
    bool name_ok = colon != std::string::npos && colon > 0 &&
                   v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") == colon;
    if (!name_ok || v.find_first_not_of(' ', colon + 1) == std::string::npos) {
        return fail("expected a header \"Name: value\", e.g. \"Authorization: Basic <base64>\"");
    }
    for (unsigned char ch : v) {
        if (ch < 0x20 || ch == 0x7f) return fail("must be one line of printable characters");
    }
    return Done{};
}

namespace {

Status check_reply(const SmtpReply& r) {
    if (r.code < 400 || r.code > 599) return fail("code must be a 4xx or 5xx SMTP reply code");
    std::string cls = std::to_string(r.code / 100);
    auto dots = std::count(r.status.begin(), r.status.end(), '.');
    if (dots != 2 || r.status.rfind(cls + ".", 0) != 0 || r.status.find_first_not_of("0123456789.") != std::string::npos) {
        return fail("status must be an RFC 3463 code of the same class as the reply code, e.g. \"" + cls + ".7.1\"");
    }
    if (r.text.empty()) return fail("text must not be empty");
    if (r.text.find_first_of("\r\n") != std::string::npos) return fail("text must be one line");
    return Done{};
}

std::string type_name(const toml::node& n) {
    switch (n.type()) {
        case toml::node_type::table: return "a table";
        case toml::node_type::array: return "an array";
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a number";
        case toml::node_type::boolean: return "a boolean";
        default: return "a date or time";
    }
}

// Walks the schema over a parsed TOML document, filling the Config.
class Reader {
public:
    Reader(const toml::table& root, std::string file, Config& config, std::vector<ConfigError>& errors)
        : file_(std::move(file)), config_(config), errors_(errors) {
        frames_.push_back(Frame{&root, "", {}, 1});
    }

    void finish() { check_unknown(frames_.back()); }
    int line_of(const std::string& key) const {
        auto it = lines_.find(key);
        return it == lines_.end() ? 0 : it->second;
    }

    template <class F>
    void section(std::string_view name, F&& body) {
        const toml::node* n = find(name);
        const toml::table* t = nullptr;
        if (n != nullptr) {
            t = n->as_table();
            if (t == nullptr) error(name, *n, "expected a table, got " + type_name(*n));
        }
        frames_.push_back(Frame{t, path(name), {}, n ? static_cast<int>(n->source().begin.line) : frames_.back().line});
        body();
        check_unknown(frames_.back());
        frames_.pop_back();
    }

    void text(std::string_view name, std::string& out, Status (*check)(const std::string&) = nullptr) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        auto s = n->value<std::string>();
        if (!n->is_string() || !s) return error(name, *n, "expected a string, got " + type_name(*n));
        if (check != nullptr) {
            if (auto checked = check(*s); !checked) return error(name, *n, checked.error() + "; got \"" + *s + "\"");
        }
        out = *s;
    }
    void secret(std::string_view name, std::string& out) { text(name, out); }

    void flag(std::string_view name, bool& out) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        if (!n->is_boolean()) return error(name, *n, "expected true or false, got " + type_name(*n));
        out = *n->value<bool>();
    }

    template <class T>
    void number(std::string_view name, T& out, T min, T max) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        if (!n->is_integer()) return error(name, *n, "expected an integer, got " + type_name(*n));
        std::int64_t v = *n->value<std::int64_t>();
        if (v < static_cast<std::int64_t>(min) || v > static_cast<std::int64_t>(max)) {
            return error(name, *n, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                                       ", got " + std::to_string(v));
        }
        out = static_cast<T>(v);
    }

    // A limit is a number, or "off" (the same as leaving the key out).
    void limit(std::string_view name, std::optional<std::uint32_t>& out) {
        std::uint32_t v = 0;
        const toml::node* n = find(name);
        if (n == nullptr) return;
        if (n->value<std::string>() == "off") {
            out.reset();
            return;
        }
        std::size_t before = errors_.size();
        number(name, v, 1u, 100'000'000u);
        if (errors_.size() == before) out = v;
    }

    void size(std::string_view name, std::uint64_t& out, std::uint64_t min) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        std::optional<std::uint64_t> v;
        if (n->is_integer() && *n->value<std::int64_t>() >= 0) v = static_cast<std::uint64_t>(*n->value<std::int64_t>());
        if (n->is_string()) v = parse_size(*n->value<std::string>());
        if (!v) return error(name, *n, "expected a size such as 10485760, \"512KB\" or \"10MB\"");
        if (*v < min) return error(name, *n, "expected at least " + format_size(min));
        out = *v;
    }
    void size_limit(std::string_view name, std::optional<std::uint64_t>& out) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        if (n->value<std::string>() == "off") {
            out.reset();
            return;
        }
        std::uint64_t v = 0;
        std::size_t before = errors_.size();
        size(name, v, 1);
        if (errors_.size() == before) out = v;
    }

    void duration(std::string_view name, Duration& out, Duration min, Duration max = Duration::max()) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        std::optional<Duration> d;
        if (n->is_string()) d = parse_duration(*n->value<std::string>());
        if (!d) return error(name, *n, "expected a duration with its unit, such as \"500ms\", \"90s\", \"30m\", \"1h\" or \"5d\"");
        if (*d < min) return error(name, *n, "expected at least " + format_duration(min));
        if (*d > max) return error(name, *n, "expected at most " + format_duration(max));
        out = *d;
    }

    template <class E>
    void choice(std::string_view name, E& out, std::initializer_list<std::pair<const char*, E>> options) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        std::string names;
        for (const auto& [k, v] : options) names += (names.empty() ? "" : ", ") + std::string(k);
        auto s = n->value<std::string>();
        if (n->is_string() && s) {
            for (const auto& [k, v] : options) {
                if (*s == k) {
                    out = v;
                    return;
                }
            }
            return error(name, *n, "expected one of " + names + "; got \"" + *s + "\"");
        }
        error(name, *n, "expected one of " + names + ", got " + type_name(*n));
    }

    void list(std::string_view name, std::vector<std::string>& out, Status (*check)(const std::string&) = nullptr) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        const toml::array* a = n->as_array();
        if (a == nullptr) return error(name, *n, "expected an array of strings, got " + type_name(*n));
        std::vector<std::string> values;
        for (const auto& el : *a) {
            auto s = el.value<std::string>();
            if (!el.is_string() || !s) return error(name, el, "expected an array of strings, found " + type_name(el));
            if (check != nullptr) {
                if (auto checked = check(*s); !checked) return error(name, el, checked.error() + "; got \"" + *s + "\"");
            }
            values.push_back(*s);
        }
        out = std::move(values);
    }

    void reply(std::string_view name, SmtpReply& out) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        const toml::table* t = n->as_table();
        if (t == nullptr) return error(name, *n, "expected { code = 554, status = \"5.7.1\", text = \"...\" }");
        SmtpReply r = out;
        for (const auto& [k, v] : *t) {
            std::string key(k.str());
            if (key == "code" && v.is_integer()) r.code = static_cast<int>(*v.value<std::int64_t>());
            else if (key == "status" && v.is_string()) r.status = *v.value<std::string>();
            else if (key == "text" && v.is_string()) r.text = *v.value<std::string>();
            else return error(name, v, "unknown or mistyped reply field '" + key + "'; expected code (integer), status and text (strings)");
        }
        if (auto checked = check_reply(r); !checked) return error(name, *n, checked.error());
        out = r;
    }

    void ip_groups(std::string_view name, std::vector<IpGroup>& out) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        const toml::table* t = n->as_table();
        if (t == nullptr) return error(name, *n, "expected a table of group = [\"CIDR\", ...]");
        std::string base = path(name);
        for (const auto& [k, v] : *t) {
            std::string group(k.str());
            IpGroup g{group, {}};
            const toml::array* a = v.as_array();
            if (a == nullptr) {
                add_error(base + "." + group, v, "expected an array of networks such as [\"192.0.2.0/24\", \"2001:db8::/32\"]");
                continue;
            }
            for (const auto& el : *a) {
                auto s = el.value<std::string>();
                auto cidr = el.is_string() && s ? Cidr::parse(*s) : std::nullopt;
                if (!cidr) {
                    add_error(base + "." + group, el, "expected an IPv4 or IPv6 network such as \"192.0.2.0/24\"" +
                                                          (s ? "; got \"" + *s + "\"" : std::string()));
                    continue;
                }
                g.networks.push_back(*cidr);
            }
            out.push_back(std::move(g));
        }
    }

    // Entries naming [ip_groups] groups; with `networks_too`, also networks
    // written out, each a group of its own named by the network, so it
    // renders back as written and a log line can name the rule that matched.
    void groups(std::string_view name, std::vector<IpGroup>& out, bool networks_too = false) {
        std::vector<std::string> entries;
        std::size_t before = errors_.size();
        list(name, entries);
        if (errors_.size() != before || find(name) == nullptr) return;
        std::vector<IpGroup> found;
        for (const auto& e : entries) {
            if (const IpGroup* known = lookup_group(e)) {
                found.push_back(*known);
            } else if (auto cidr = networks_too ? Cidr::parse(e) : std::nullopt) {
                found.push_back(IpGroup{cidr->to_string(), {*cidr}});
            } else if (networks_too) {
                return error(name, *find(name), "\"" + e + "\" is neither an IP group in [ip_groups] nor a network "
                                                "such as \"192.0.2.0/24\"");
            } else {
                return error(name, *find(name), "no IP group named \"" + e + "\" in [ip_groups]");
            }
        }
        out = std::move(found);
    }

    // A table of string values ({ "example.de" = "de" }); keys are folded to
    // lower case, as domains compare.
    void text_map(std::string_view name, std::map<std::string, std::string>& out) {
        const toml::node* n = find(name);
        if (n == nullptr) return;
        const toml::table* t = n->as_table();
        if (t == nullptr) return error(name, *n, "expected a table such as { \"example.de\" = \"de\" }");
        std::map<std::string, std::string> found;
        for (const auto& [k, v] : *t) {
            auto value = v.value<std::string>();
            if (!v.is_string() || !value) return error(name, v, "expected a string value for \"" + std::string(k.str()) + "\"");
            std::string key(k.str());
            for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            found[key] = *value;
        }
        out = std::move(found);
    }

    void groups_or_networks(std::string_view name, std::vector<IpGroup>& out) { groups(name, out, true); }

    void group(std::string_view name, std::optional<IpGroup>& out) {
        std::string g;
        std::size_t before = errors_.size();
        text(name, g);
        if (errors_.size() != before || find(name) == nullptr) return;
        if (g.empty()) {
            out.reset();
            return;
        }
        const IpGroup* known = lookup_group(g);
        if (known == nullptr) return error(name, *find(name), "no IP group named \"" + g + "\" in [ip_groups]");
        out = *known;
    }

    void add_error(std::string key, const toml::node& at, std::string message) {
        errors_.push_back(ConfigError{file_, static_cast<int>(at.source().begin.line), std::move(key), std::move(message)});
    }

private:
    struct Frame {
        const toml::table* table;  // null when the section is absent: all defaults
        std::string path;
        std::set<std::string> seen;
        int line;
    };

    std::string path(std::string_view name) const {
        const std::string& base = frames_.back().path;
        return base.empty() ? std::string(name) : base + "." + std::string(name);
    }

    const toml::node* find(std::string_view name) {
        Frame& f = frames_.back();
        f.seen.insert(std::string(name));
        if (f.table == nullptr) return nullptr;
        const toml::node* n = f.table->get(name);
        if (n != nullptr) lines_[path(name)] = static_cast<int>(n->source().begin.line);
        return n;
    }

    const IpGroup* lookup_group(const std::string& name) const {
        for (const auto& g : config_.ip_groups) {
            if (g.name == name) return &g;
        }
        return nullptr;
    }

    void error(std::string_view name, const toml::node& at, std::string message) { add_error(path(name), at, std::move(message)); }

    void check_unknown(const Frame& f) {
        if (f.table == nullptr) return;
        for (const auto& [k, v] : *f.table) {
            std::string key(k.str());
            if (f.seen.count(key)) continue;
            std::string full = f.path.empty() ? key : f.path + "." + key;
            add_error(full, v, v.is_table() ? "unknown section" : "unknown key (a typo here could disable a protection)");
        }
    }

    std::string file_;
    Config& config_;
    std::vector<ConfigError>& errors_;
    std::vector<Frame> frames_;
    std::map<std::string, int> lines_;
};

// Walks the schema the other way, building TOML from a Config.
class Renderer {
public:
    // `secrets_as_is`: for comparing two configs only, never for output.
    explicit Renderer(toml::table& root, bool secrets_as_is = false) : secrets_as_is_(secrets_as_is) {
        tables_.push_back(&root);
    }

    template <class F>
    void section(std::string_view name, F&& body) {
        toml::table t;
        tables_.push_back(&t);
        body();
        tables_.pop_back();
        put(name, std::move(t));
    }
    void text(std::string_view name, const std::string& v, Status (*)(const std::string&) = nullptr) { put(name, v); }
    void secret(std::string_view name, const std::string& v) {
        put(name, v.empty() || secrets_as_is_ ? v : std::string("********"));
    }
    void flag(std::string_view name, bool v) { put(name, v); }
    template <class T>
    void number(std::string_view name, T v, T, T) { put(name, static_cast<std::int64_t>(v)); }
    void limit(std::string_view name, const std::optional<std::uint32_t>& v) {
        if (v) put(name, static_cast<std::int64_t>(*v));
        else put(name, std::string("off"));
    }
    void size(std::string_view name, std::uint64_t v, std::uint64_t) { put(name, format_size(v)); }
    void size_limit(std::string_view name, const std::optional<std::uint64_t>& v) { put(name, v ? format_size(*v) : std::string("off")); }
    void duration(std::string_view name, Duration d, Duration, Duration = Duration::max()) { put(name, format_duration(d)); }
    template <class E>
    void choice(std::string_view name, E v, std::initializer_list<std::pair<const char*, E>> options) {
        for (const auto& [k, e] : options) {
            if (e == v) put(name, std::string(k));
        }
    }
    void list(std::string_view name, const std::vector<std::string>& v, Status (*)(const std::string&) = nullptr) {
        toml::array a;
        for (const auto& s : v) a.push_back(s);
        put(name, std::move(a));
    }
    void reply(std::string_view name, const SmtpReply& r) {
        toml::table t{{"code", r.code}, {"status", r.status}, {"text", r.text}};
        t.is_inline(true);
        put(name, std::move(t));
    }
    void ip_groups(std::string_view name, const std::vector<IpGroup>& groups) {
        toml::table t;
        for (const auto& g : groups) {
            toml::array a;
            for (const auto& n : g.networks) a.push_back(n.to_string());
            t.insert_or_assign(g.name, std::move(a));
        }
        put(name, std::move(t));
    }
    void groups(std::string_view name, const std::vector<IpGroup>& groups) {
        toml::array a;
        for (const auto& g : groups) a.push_back(g.name);
        put(name, std::move(a));
    }
    void group(std::string_view name, const std::optional<IpGroup>& g) { put(name, g ? g->name : std::string()); }
    void groups_or_networks(std::string_view name, const std::vector<IpGroup>& groups) { this->groups(name, groups); }
    void text_map(std::string_view name, const std::map<std::string, std::string>& m) {
        toml::table t;
        for (const auto& [k, v] : m) t.insert_or_assign(k, v);
        t.is_inline(true);
        put(name, std::move(t));
    }

private:
    bool secrets_as_is_ = false;
    template <class T>
    void put(std::string_view name, T&& v) { tables_.back()->insert_or_assign(name, std::forward<T>(v)); }
    std::vector<toml::table*> tables_;
};

// Local domains from the file named in the config: one per line, '#' starts
// a comment. Errors point into that file.
void read_domain_file(const std::string& path, std::vector<std::string>& out, std::vector<ConfigError>& errors,
                      const std::string& config_file, int config_line) {
    std::ifstream in(path);
    if (!in) {
        errors.push_back({config_file, config_line, "relay.local_domains_file", "cannot read \"" + path + "\""});
        return;
    }
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        auto b = line.find_first_not_of(" \t\r");
        if (b == std::string::npos) continue;
        auto e = line.find_last_not_of(" \t\r");
        std::string d = line.substr(b, e - b + 1);
        if (d.find_first_of(" \t@/") != std::string::npos) {
            errors.push_back({path, n, "", "expected one domain per line, got \"" + d + "\""});
            continue;
        }
        out.push_back(d);
    }
}

std::string octal_mode(unsigned mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", mode & 07777u);
    return buf;
}

// A file any local user can rewrite decides who may relay; one any local user
// can read gives away the passwords in it. Both are refused, as ssh refuses a
// private key that others can read.
void check_file_access(const Config& c, const Reader& r, std::optional<unsigned> mode,
                       std::vector<ConfigError>& errors) {
    if (!mode) return;
    if (*mode & S_IWOTH) {
        errors.push_back(ConfigError{c.source, 0, "", "the config file is writable by every user (mode " +
                                                          octal_mode(*mode) + "); chmod o-w it"});
    }
    if (!(*mode & S_IROTH)) return;
    const std::pair<const char*, bool> secrets[] = {{"store.redis.password", !c.store.redis.password.empty()},
                                                    {"delivery.password", !c.delivery.password.empty()},
                                                    {"delivery.oauth2.client_secret",
                                                     !c.delivery.oauth2.client_secret.empty() &&
                                                         c.delivery.oauth2.client_secret_file.empty()},
                                                    {"auth_events.dovecot_api_header",
                                                     !c.auth_events.dovecot_api_header.empty()}};
    for (const auto& [key, set] : secrets) {
        if (!set) continue;
        errors.push_back(ConfigError{c.source, r.line_of(key), key,
                                     "holds a password, but the file is readable by every user (mode " +
                                         octal_mode(*mode) + "); chmod o-r it (e.g. 0640 root:relayguard)"});
    }
}

// Adds an error at the line of a key.
struct KeyErrors {
    const Config& c;
    const Reader& r;
    std::vector<ConfigError>& errors;
    void operator()(const std::string& key, std::string message) const {
        errors.push_back(ConfigError{c.source, r.line_of(key), key, std::move(message)});
    }
};

// The local domains (inline and from their file) and the DNS checks.
void validate_relay(Config& c, const Reader& r, std::vector<ConfigError>& errors) {
    KeyErrors fail{c, r, errors};
    std::vector<std::string> domains = c.local_domains.domains;
    std::size_t errors_before = errors.size();
    if (!c.local_domains.file.empty()) {
        read_domain_file(c.local_domains.file, domains, errors, c.source, r.line_of("relay.local_domains_file"));
    }
    for (const auto& d : domains) {
        if (d.empty() || d == "." || d.find_first_of(" \t@/") != std::string::npos) {
            fail("relay.local_domains", "\"" + d + "\" is not a domain name");
            continue;
        }
        c.policy.relay.local_domains.add(d, c.local_domains.match_subdomains);
    }
    // Domains read from the MTA are added by the daemon, which checks again.
    if (c.policy.relay.mode == RelayMode::restricted && c.policy.relay.local_domains.empty() &&
        c.local_domains.from == DomainsFrom::none && errors.size() == errors_before) {
        fail("relay.local_domains", "no local domains: in restricted mode every recipient would be relaying");
    }
    const auto& dns = c.policy.dns;
    if (dns.require_forward_confirmed_ptr && !dns.require_client_ptr) {
        fail("dns.require_forward_confirmed_ptr", "needs require_client_ptr = true");
    }
}

void validate_store(Config& c, const Reader& r, std::vector<ConfigError>& errors) {
    KeyErrors fail{c, r, errors};
    const auto& redis = c.store.redis;
    if (c.store.type == StoreType::redis && redis.servers.empty()) fail("store.redis.servers", "no Redis server given");
    if (redis.mode == RedisMode::single && redis.servers.size() > 1) {
        fail("store.redis.servers", "single mode takes one server; list sentinels with mode = \"sentinel\" "
                                    "or seed nodes with mode = \"cluster\"");
    }
    if (redis.mode != RedisMode::single) {
        for (const auto& s : redis.servers) {
            if (s.rfind("unix:", 0) == 0) fail("store.redis.servers", "sentinels and cluster nodes are reached over TCP, not \"" + s + "\"");
        }
    }
    // Keys carry the client in a {hash tag}; a brace in the prefix would
    // become the tag and put every client in one Cluster slot.
    if (redis.key_prefix.find_first_of("{}") != std::string::npos) fail("store.redis.key_prefix", "must not contain '{' or '}'");
    if (c.store.redis.mode == RedisMode::sentinel && c.store.redis.sentinel_master.empty()) {
        fail("store.redis.sentinel_master", "sentinel mode needs the master's name");
    }
}

// A file holding a secret (a key, a client secret): refused when every
// user may read or write it, as the config's own secrets are.
void check_secret_file(const std::string& key, const std::string& path, const KeyErrors& fail) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        fail(key, "cannot read \"" + path + "\": " + std::strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        fail(key, "\"" + path + "\" is not a file");
    } else if (st.st_mode & (S_IROTH | S_IWOTH)) {
        fail(key, "\"" + path + "\" holds a secret, but every user may read or write it (mode " +
                      octal_mode(st.st_mode) + "); chmod o-rw it (e.g. 0640 root:relayguard)");
    }
}

// delivery.auth = "oauth2": the provider preset filled in, the endpoints
// https, the client secret read from its file.
void validate_oauth(DeliverySettings& d, const KeyErrors& fail) {
    auto& o = d.oauth2;
    if (o.provider == "microsoft365") {
        // The v2.0 endpoints; SMTP.Send is the delegated permission, .default
        // the app-only one (an Exchange service principal with SMTP.SendAsApp).
        std::string base = "https://login.microsoftonline.com/" + o.tenant + "/oauth2/v2.0/";
        if (o.token_endpoint.empty()) o.token_endpoint = base + "token";
        if (o.device_endpoint.empty()) o.device_endpoint = base + "devicecode";
        if (o.scope.empty()) {
            o.scope = o.grant == OAuthGrant::client_credentials ? "https://outlook.office365.com/.default"
                                                                : "https://outlook.office.com/SMTP.Send offline_access";
        }
        if (o.grant == OAuthGrant::client_credentials && (o.tenant == "organizations" || o.tenant == "common")) {
            fail("delivery.oauth2.tenant", "the client-credentials grant needs the tenant's id or domain, not \"" +
                                               o.tenant + "\"");
        }
    } else if (o.provider == "google") {
        if (o.token_endpoint.empty()) o.token_endpoint = "https://oauth2.googleapis.com/token";
        if (o.device_endpoint.empty()) o.device_endpoint = "https://oauth2.googleapis.com/device/code";
        if (o.scope.empty()) o.scope = "https://mail.google.com/";
    }
    if (o.token_endpoint.rfind("https://", 0) != 0) {
        fail("delivery.oauth2.token_endpoint", o.token_endpoint.empty()
                                                   ? "auth = \"oauth2\" needs a provider or a token_endpoint"
                                                   : "must be an https:// URL: the client secret and tokens cross it");
    }
    if (!o.device_endpoint.empty() && o.device_endpoint.rfind("https://", 0) != 0) {
        fail("delivery.oauth2.device_endpoint", "must be an https:// URL");
    }
    if (o.client_id.empty()) fail("delivery.oauth2.client_id", "auth = \"oauth2\" needs the application's client id");
    if (o.scope.empty()) fail("delivery.oauth2.scope", "auth = \"oauth2\" needs a provider or a scope");
    if (d.username.empty()) {
        fail("delivery.username", "auth = \"oauth2\" needs the mailbox that sends (XOAUTH2 and OAUTHBEARER name it)");
    } else if (std::any_of(d.username.begin(), d.username.end(),
                           [](char ch) { return static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f; })) {
        // It goes into the SASL message, whose fields ^A ends.
        fail("delivery.username", "must not hold blanks or control characters");
    }
    if (!o.client_secret_file.empty()) {
        if (!o.client_secret.empty()) {
            fail("delivery.oauth2.client_secret_file", "set both client_secret and client_secret_file; keep one");
        }
        check_secret_file("delivery.oauth2.client_secret_file", o.client_secret_file, fail);
        std::ifstream in(o.client_secret_file);
        std::string secret;
        std::getline(in, secret);
        while (!secret.empty() && (secret.back() == '\r' || secret.back() == ' ')) secret.pop_back();
        if (in.bad() || secret.empty()) fail("delivery.oauth2.client_secret_file", "holds no secret on its first line");
        o.client_secret = secret;
    }
    if (o.grant == OAuthGrant::client_credentials && o.client_secret.empty()) {
        fail("delivery.oauth2.grant", "client_credentials needs client_secret or client_secret_file");
    }
    if (o.token_store.empty() || o.token_store[0] != '/') {
        fail("delivery.oauth2.token_store", "must be an absolute path");
    }
}

void validate_delivery(Config& c, const Reader& r, std::vector<ConfigError>& errors) {
    KeyErrors fail{c, r, errors};
    auto& d = c.delivery;
    if (d.auth == SmarthostAuth::oauth2) {
        if (d.route != DeliveryRoute::smarthost) fail("delivery.auth", "oauth2 is for smart hosts: set route = \"smarthost\"");
        validate_oauth(d, fail);
    }
    if (d.tls_client_cert.empty() != d.tls_client_key.empty()) {
        fail(d.tls_client_cert.empty() ? "delivery.tls_client_key" : "delivery.tls_client_cert",
             "a client certificate needs both tls_client_cert and tls_client_key");
    } else if (!d.tls_client_key.empty()) {
        check_secret_file("delivery.tls_client_key", d.tls_client_key, fail);
        if (::access(d.tls_client_cert.c_str(), R_OK) != 0) {
            fail("delivery.tls_client_cert", "cannot read \"" + d.tls_client_cert + "\": " + std::strerror(errno));
        }
    }
    if (d.route == DeliveryRoute::smarthost && d.smarthosts.empty()) {
        fail("delivery.smarthosts", "route = \"smarthost\" needs at least one smart host");
    }
    if (d.auth == SmarthostAuth::smtp_auth && (d.username.empty() || d.password.empty())) {
        fail("delivery.auth", "smtp-auth needs username and password");
    }
    if (d.auth == SmarthostAuth::pop_before_smtp && (d.pop_server.empty() || d.username.empty())) {
        fail("delivery.auth", "pop-before-smtp needs pop_server, username and password");
    }
    if (!d.pop_server.empty()) {
        if (auto checked = check_host_port(d.pop_server); !checked) fail("delivery.pop_server", checked.error());
    }
    if (d.max_retry_interval < d.retry_interval) fail("delivery.max_retry_interval", "must not be shorter than retry_interval");
    if (d.warning_delay >= d.message_lifetime && d.warning_delay.count() > 0) {
        fail("delivery.warning_delay", "must be shorter than message_lifetime (or 0s for no warning)");
    }
    auto language_tag = [](const std::string& tag) {
        return !tag.empty() && tag.size() <= 35 && tag.find_first_not_of(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == std::string::npos;
    };
    if (d.report_language.empty() || d.report_language.find_first_of("/.") != std::string::npos) {
        fail("delivery.report_language", "expected a language tag such as \"en\" or \"de\"");
    }
    for (const auto& [domain, language] : d.report_languages) {
        if (domain.empty() || domain == "." || domain.find_first_of("@ /") != std::string::npos) {
            fail("delivery.report_languages", "expected sender domains as keys, such as \"example.de\"; got \"" + domain + "\"");
        } else if (!language_tag(language)) {
            fail("delivery.report_languages", "expected a language tag such as \"de\" for \"" + domain + "\"; got \"" +
                                                  language + "\"");
        }
    }
}

// What no single key can say alone: settings that need one another.
void validate(Config& c, const Reader& r, std::vector<ConfigError>& errors) {
    KeyErrors fail{c, r, errors};
    validate_relay(c, r, errors);
    validate_store(c, r, errors);
    const auto& compromised = c.policy.limits.compromised_accounts;
    if (compromised.quota_factor && *compromised.quota_factor < 2) {
        fail("limits.compromised_accounts.quota_factor", "must be at least 2 (or off): 1 would mark every account at its quota");
    }
    if (!compromised.command.empty() && (compromised.command[0].empty() || compromised.command[0][0] != '/')) {
        fail("limits.compromised_accounts.command", "the program must be an absolute path (it runs without a shell)");
    }
    auto& quotas = c.policy.limits.user_quotas;
    if (!quotas.overrides_file.empty()) {
        read_user_quota_file(quotas, errors, c.source, r.line_of("limits.user_quotas.overrides_file"));
    }
    if (!c.pop_before_smtp.log_file.empty() && !c.policy.relay.allow_pop_before_smtp) {
        fail("pop_before_smtp.log_file", "set, but relay.allow_pop_before_smtp is false: the windows would open nothing");
    }
    c.policy.limits.auth_failures.reported = !c.auth_events.dovecot_policy.empty() ||
                                             !c.auth_events.log_files.empty() || c.store.type == StoreType::redis;
    if (!c.auth_events.dovecot_policy.empty()) {
        // Whoever can report a failed login can block an address, and one
        // who reports a POP3 login opens relay: every request must carry it.
        if (c.auth_events.dovecot_api_header.empty()) {
            fail("auth_events.dovecot_api_header",
                 "needed with auth_events.dovecot_policy: the header Dovecot sends (auth_policy_server_api_header)");
        }
    }
    if (!c.auth_events.dovecot_api_header.empty()) {
        if (auto checked = check_header_line(c.auth_events.dovecot_api_header); !checked) {
            fail("auth_events.dovecot_api_header", checked.error());
        }
    }
    if (!c.alerts.sender.empty()) {
        if (auto checked = check_mail_address(c.alerts.sender); !checked) fail("alerts.sender", checked.error());
    }
    validate_delivery(c, r, errors);
    if (c.log.targets.empty()) fail("log.targets", "at least one target is needed (\"stderr\", \"syslog\" or a file)");
}

}  // namespace

namespace {

ConfigLoad load_config(std::string_view text, const std::string& source_name, std::optional<unsigned> file_mode) {
    ConfigLoad out;
    toml::table root;
    try {
        root = toml::parse(text, source_name);
    } catch (const toml::parse_error& e) {
        out.errors.push_back(ConfigError{source_name, static_cast<int>(e.source().begin.line), "",
                                         "TOML syntax: " + std::string(e.description())});
        return out;
    }
    Config c;
    c.source = source_name;
    // Defaults that are lists must not merge with what the file gives.
    c.ip_groups.clear();
    Reader reader(root, source_name, c, out.errors);
    config_schema(reader, c);
    reader.finish();
    if (out.errors.empty()) validate(c, reader, out.errors);
    if (out.errors.empty()) check_file_access(c, reader, file_mode, out.errors);
    if (out.errors.empty()) out.config = std::move(c);
    return out;
}

}  // namespace

ConfigLoad load_config_text(std::string_view text, const std::string& source_name) {
    return load_config(text, source_name, std::nullopt);
}

ConfigLoad load_config(const std::string& path) {
    if (path.empty()) return load_config_text(embedded_default_config(), "<embedded default>");
    return load_config_file(path);
}

std::string ConfigLoad::errors_text() const {
    std::string out;
    for (const auto& e : errors) out += (out.empty() ? "" : "; ") + e.to_string();
    return out;
}

ConfigLoad load_config_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        ConfigLoad out;
        out.errors.push_back(ConfigError{path, 0, "", "cannot open the config file"});
        return out;
    }
    std::ostringstream text;
    text << in.rdbuf();
    struct stat st {};
    std::optional<unsigned> mode;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) mode = static_cast<unsigned>(st.st_mode);
    return load_config(text.str(), path, mode);
}

namespace {

// A value as TOML text: nodes have no == of their own.
std::string node_text(const toml::node& n) {
    std::ostringstream os;
    n.visit([&os](const auto& v) { os << v; });
    return os.str();
}

void diff_tables(const toml::table& a, const toml::table& b, const std::string& prefix, std::vector<std::string>& out) {
    std::set<std::string> keys;
    for (const auto& [k, v] : a) keys.insert(std::string(k.str()));
    for (const auto& [k, v] : b) keys.insert(std::string(k.str()));
    for (const auto& k : keys) {
        const toml::node* x = a.get(k);
        const toml::node* y = b.get(k);
        std::string path = prefix.empty() ? k : prefix + "." + k;
        if (x && y && x->is_table() && y->is_table() && !x->as_table()->is_inline()) {
            diff_tables(*x->as_table(), *y->as_table(), path, out);
        } else if (!x || !y || node_text(*x) != node_text(*y)) {
            out.push_back(path);
        }
    }
}

}  // namespace

std::vector<std::string> changed_settings(const Config& before, const Config& after) {
    toml::table a, b;
    Renderer ra(a, true), rb(b, true);
    config_schema(ra, const_cast<Config&>(before));
    config_schema(rb, const_cast<Config&>(after));
    std::vector<std::string> out;
    diff_tables(a, b, "", out);
    return out;
}

std::string render_config(const Config& config) {
    toml::table root;
    Renderer r(root);
    config_schema(r, const_cast<Config&>(config));
    std::ostringstream os;
    os << root << "\n";
    return os.str();
}

}  // namespace relayguard
