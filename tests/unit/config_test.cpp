// The configuration loader: the example file loads, every error names the
// file, the line and the key, and unknown keys are refused.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "conf/config.h"

using namespace relayguard;

namespace {
ConfigLoad load(const std::string& text) { return load_config_text(text, "test.toml"); }

std::string only_error(const ConfigLoad& l) {
    REQUIRE(l.errors.size() == 1);
    return l.errors[0].to_string();
}

const char* minimal = "[relay]\nlocal_domains = [\"example.test\"]\n";
}  // namespace

TEST_CASE("the shipped example config loads, and is the embedded default", "[config]") {
    auto file = load_config_file(std::string(RELAYGUARD_SOURCE_DIR) + "/conf/relayguard.toml");
    for (const auto& e : file.errors) FAIL(e.to_string());
    REQUIRE(file.config);
    std::ifstream in(std::string(RELAYGUARD_SOURCE_DIR) + "/conf/relayguard.toml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(text == embedded_default_config());
    const Config& c = *file.config;
    REQUIRE(c.listen.milter == "inet:127.0.0.1:8893");
    REQUIRE(c.listen.workers == 32);
    REQUIRE(c.listen.policy_read_timeout == std::chrono::seconds(10));
    REQUIRE(c.listen.policy_idle_timeout == std::chrono::seconds(300));
    REQUIRE(c.store.type == StoreType::memory);
    REQUIRE(c.policy.relay.local_domains.contains("example.test"));
    REQUIRE(c.policy.relay.trusted_groups.size() == 1);
    REQUIRE(c.policy.limits.exempt->name == "internal");
    REQUIRE_FALSE(c.policy.limits.message_rate.max);
}

TEST_CASE("values are read with their units", "[config]") {
    auto l = load(std::string(minimal) +
                  "[limits.message_rate]\nmax = 100\nwindow = \"30m\"\ncount = \"attempts\"\nmode = \"warn\"\n"
                  "[limits.message_size]\nmax = \"10MB\"\n"
                  "[limits.unknown_recipients]\nmax = 5\nblock_time = \"2h\"\n"
                  "[limits.recipients]\nmax = \"off\"\n"
                  "[limits.hops]\nmax = 30\nreply = { code = 550, status = \"5.4.6\", text = \"Loop\" }\n");
    for (const auto& e : l.errors) FAIL(e.to_string());
    const auto& lim = l.config->policy.limits;
    REQUIRE(lim.message_rate.max == 100u);
    REQUIRE(lim.message_rate.window == std::chrono::minutes(30));
    REQUIRE(lim.message_rate.count == CountMode::attempts);
    REQUIRE(lim.message_rate.mode == LimitMode::warn);
    REQUIRE(lim.message_size.max == 10u << 20);
    REQUIRE(lim.unknown_recipients.block_time == std::chrono::hours(2));
    REQUIRE_FALSE(lim.recipients.max);
    REQUIRE(lim.hops.reply == SmtpReply{550, "5.4.6", "Loop"});
}

TEST_CASE("a typo in a key is refused with its line", "[config]") {
    auto l = load(std::string(minimal) + "[limits.message_rate]\nmax = 10\nwindw = \"1h\"\n");
    REQUIRE_FALSE(l.config);
    std::string e = only_error(l);
    REQUIRE(e.find("test.toml:5:") == 0);
    REQUIRE(e.find("key 'limits.message_rate.windw'") != std::string::npos);
    REQUIRE(e.find("unknown key") != std::string::npos);
}

TEST_CASE("an unknown section is refused too", "[config]") {
    auto l = load(std::string(minimal) + "\n[limit]\nmax = 1\n");
    REQUIRE(only_error(l).find("test.toml:4: key 'limit': unknown section") == 0);
}

TEST_CASE("wrong types and values say what was expected", "[config]") {
    struct Case { std::string text; std::string key; std::string says; };
    std::vector<Case> cases = {
        {"[limits.message_rate]\nmax = \"ten\"", "limits.message_rate.max", "expected an integer"},
        {"[limits.message_rate]\nmax = 0", "limits.message_rate.max", "from 1 to"},
        {"[limits.message_rate]\nwindow = 3600", "limits.message_rate.window", "duration with its unit"},
        {"[limits.message_rate]\ncount = \"messages\"", "limits.message_rate.count", "one of accepted, attempts"},
        {"[limits.message_size]\nmax = \"10XB\"", "limits.message_size.max", "expected a size"},
        {"[relay]\nmode = \"opne\"", "relay.mode", "one of restricted, open"},
        {"[relay]\ntrusted_groups = [\"nosuch\"]", "relay.trusted_groups", "no IP group named \"nosuch\""},
        {"[relay]\nreply = { code = 250, status = \"2.0.0\", text = \"ok\" }", "relay.reply", "4xx or 5xx"},
        {"[relay]\nreply = { code = 554, status = \"4.7.1\", text = \"x\" }", "relay.reply", "same class"},
        {"[relay]\nreply = { code = 554, status = \"5.7.1\", txt = \"x\" }", "relay.reply", "unknown or mistyped reply field 'txt'"},
        {"[ip_groups]\nbad = [\"10.0.0.0/33\"]", "ip_groups.bad", "IPv4 or IPv6 network"},
        {"[listen]\nmilter = \"tcp:8893\"", "listen.milter", "inet:HOST:PORT"},
        {"[listen]\npolicy = \"inet:127.0.0.1:99999\"", "listen.policy", "port between 1 and 65535"},
        {"[listen]\nsocket_mode = \"0666\"", "listen.socket_mode", "every user"},
        {"[limits]\nipv6_prefix = 129", "limits.ipv6_prefix", "from 16 to 128"},
        {"[log]\nlevel = \"loud\"", "log.level", "expected one of"},
        {"[store]\ntype = \"redis\"\n[store.redis]\nservers = [\"localhost\"]", "store.redis.servers", "HOST:PORT"},
        {"[store.redis]\nkey_prefix = \"rg{x}:\"", "store.redis.key_prefix", "must not contain '{'"},
        {"[store.redis]\nservers = [\"a:1\", \"b:2\"]", "store.redis.servers", "single mode takes one server"},
        {"[store.redis]\nmode = \"cluster\"\nservers = [\"unix:/run/r.sock\"]", "store.redis.servers", "over TCP"},
        {"[store.redis]\nconnection_lease = \"1s\"", "store.redis.connection_lease", "at least"},
        {"[listen]\npolicy_read_timeout = \"101s\"", "listen.policy_read_timeout", "at most 100s"},
        {"[listen]\npolicy_idle_timeout = \"500ms\"", "listen.policy_idle_timeout", "at least 1s"},
        {"[listen]\nworkers = 0", "listen.workers", "from 1 to 1024"},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        // Put the relay section last so the failing key's line is 2.
        auto l = load(c.text + "\n[relay]\nlocal_domains = [\"example.test\"]\n");
        if (c.text.rfind("[relay]", 0) == 0) l = load("[relay]\nlocal_domains = [\"example.test\"]\n" + c.text.substr(8));
        REQUIRE_FALSE(l.config);
        REQUIRE_FALSE(l.errors.empty());
        std::string e = l.errors[0].to_string();
        INFO(e);
        REQUIRE(e.find("key '" + c.key + "'") != std::string::npos);
        REQUIRE(e.find(c.says) != std::string::npos);
        REQUIRE(l.errors[0].line > 0);
    }
}

TEST_CASE("every error in the file is reported, not just the first", "[config]") {
    auto l = load(std::string(minimal) + "[limits]\nipv4_prefix = 99\nfoo = 1\n[log]\nlevel = \"x\"\n");
    REQUIRE(l.errors.size() == 3);
    REQUIRE(l.errors[0].line == 4);
    REQUIRE(l.errors[1].line == 5);
    REQUIRE(l.errors[2].line == 7);
}

TEST_CASE("TOML syntax errors give the line", "[config]") {
    auto l = load("[relay]\nlocal_domains = [\"example.test\"\n");
    REQUIRE_FALSE(l.config);
    REQUIRE(l.errors[0].to_string().find("test.toml:") == 0);
    REQUIRE(l.errors[0].line >= 2);
}

TEST_CASE("cross-key checks name the key", "[config]") {
    auto no_domains = load("[relay]\nmode = \"restricted\"\nlocal_domains = []\n");
    REQUIRE(only_error(no_domains).find("test.toml:3: key 'relay.local_domains'") == 0);
    auto smarthost = load(std::string(minimal) + "[delivery]\nroute = \"smarthost\"\n");
    REQUIRE(only_error(smarthost).find("key 'delivery.smarthosts'") != std::string::npos);
    auto fcrdns = load(std::string(minimal) + "[dns]\nrequire_forward_confirmed_ptr = true\n");
    REQUIRE(only_error(fcrdns).find("test.toml:4: key 'dns.require_forward_confirmed_ptr'") == 0);
}

TEST_CASE("local domains may come from a file, with its own line numbers in errors", "[config]") {
    std::string path = "relayguard-test-domains.txt";
    {
        std::ofstream f(path);
        f << "# local domains\nexample.net\n\n  Sub.Example.ORG  # comment\n";
    }
    auto l = load("[relay]\nlocal_domains_file = \"" + path + "\"\n");
    for (const auto& e : l.errors) FAIL(e.to_string());
    REQUIRE(l.config->policy.relay.local_domains.contains("example.net"));
    REQUIRE(l.config->policy.relay.local_domains.contains("sub.example.org"));
    {
        std::ofstream f(path);
        f << "example.net\nnot a domain\n";
    }
    auto bad = load("[relay]\nlocal_domains_file = \"" + path + "\"\n");
    REQUIRE(only_error(bad).find(path + ":2:") == 0);
    auto missing = load("[relay]\nlocal_domains_file = \"/nonexistent/domains\"\n");
    REQUIRE(only_error(missing).find("test.toml:2: key 'relay.local_domains_file'") == 0);
    std::remove(path.c_str());
}

TEST_CASE("delivery.allow_plaintext_auth: off unless said, a bool, and kept through a render", "[config]") {
    auto plain = load(std::string(minimal));
    REQUIRE(plain.config);
    REQUIRE_FALSE(plain.config->delivery.allow_plaintext_auth);
    auto allowed = load(std::string(minimal) + "[delivery]\nallow_plaintext_auth = true\n");
    for (const auto& e : allowed.errors) FAIL(e.to_string());
    REQUIRE(allowed.config->delivery.allow_plaintext_auth);
    auto again = load(render_config(*allowed.config));
    REQUIRE(again.config);
    REQUIRE(again.config->delivery.allow_plaintext_auth);
    auto wrong = load(std::string(minimal) + "[delivery]\nallow_plaintext_auth = \"yes\"\n");
    REQUIRE_FALSE(wrong.config);
    REQUIRE(only_error(wrong).find("test.toml:4: key 'delivery.allow_plaintext_auth'") == 0);
}

TEST_CASE("the effective settings render as TOML that loads back the same, with secrets masked", "[config]") {
    auto l = load(std::string(minimal) + "[limits.message_rate]\nmax = 7\n[store.redis]\npassword = \"hunter2\"\n"
                                         "[delivery]\npassword = \"s3cret\"\n");
    REQUIRE(l.config);
    std::string text = render_config(*l.config);
    REQUIRE(text.find("hunter2") == std::string::npos);
    REQUIRE(text.find("s3cret") == std::string::npos);
    REQUIRE(text.find("********") != std::string::npos);
    auto again = load(text);
    for (const auto& e : again.errors) FAIL(e.to_string() + "\n" + text);
    REQUIRE(again.config->policy.limits.message_rate.max == 7u);
    REQUIRE(render_config(*again.config) == text);
}

TEST_CASE("a config file that others may read or write is refused when it matters", "[config]") {
    std::string path = "/tmp/relayguard-config-mode-" + std::to_string(::getpid()) + ".toml";
    auto write = [&](const std::string& text, mode_t mode) {
        std::ofstream(path) << text;
        REQUIRE(::chmod(path.c_str(), mode) == 0);
    };
    std::string with_password = std::string(minimal) + "[delivery]\nusername = \"relay\"\npassword = \"s3cret\"\n";

    write(with_password, 0644);
    auto l = load_config_file(path);
    REQUIRE_FALSE(l.config);
    std::string e = only_error(l);
    REQUIRE(e.find(path + ":5:") != std::string::npos);
    REQUIRE(e.find("delivery.password") != std::string::npos);
    REQUIRE(e.find("mode 0644") != std::string::npos);
    REQUIRE(e.find("s3cret") == std::string::npos);

    write(with_password, 0640);
    REQUIRE(load_config_file(path).config);

    write(minimal, 0644);  // no secret: readable by all is fine
    REQUIRE(load_config_file(path).config);

    write(minimal, 0646);
    l = load_config_file(path);
    REQUIRE_FALSE(l.config);
    REQUIRE(only_error(l).find("writable by every user") != std::string::npos);
    ::unlink(path.c_str());
}

TEST_CASE("the relay client's intake takes mail from loopback only, unless delivery.allowed_clients says more",
          "[config]") {
    auto allows = [](const Config& c, const char* addr) {
        return find_group(c.delivery.allowed_clients, *IpAddress::parse(addr)) != nullptr;
    };
    auto defaults = load(minimal);
    REQUIRE(defaults.config);
    REQUIRE(allows(*defaults.config, "127.0.0.1"));
    REQUIRE(allows(*defaults.config, "127.0.0.2"));
    REQUIRE(allows(*defaults.config, "::1"));
    REQUIRE_FALSE(allows(*defaults.config, "192.0.2.1"));
    REQUIRE_FALSE(allows(*defaults.config, "2001:db8::1"));

    auto set = load(std::string(minimal) + "[ip_groups]\nappliances = [\"192.0.2.0/28\"]\n"
                                           "[delivery]\nallowed_clients = [\"appliances\", \"127.0.0.1\"]\n");
    for (const auto& e : set.errors) FAIL(e.to_string());
    REQUIRE(allows(*set.config, "192.0.2.5"));
    REQUIRE(allows(*set.config, "127.0.0.1"));
    REQUIRE_FALSE(allows(*set.config, "127.0.0.2"));
    REQUIRE_FALSE(allows(*set.config, "192.0.2.16"));
    // The effective settings name the group and the network as written.
    std::string text = render_config(*set.config);
    auto line = text.substr(text.find("allowed_clients"));
    line = line.substr(0, line.find('\n'));
    REQUIRE(line.find("appliances") != std::string::npos);
    REQUIRE(line.find("127.0.0.1/32") != std::string::npos);
    REQUIRE(render_config(*load(text).config) == text);

    auto typo = load(std::string(minimal) + "[delivery]\nallowed_clients = [\"applainces\"]\n");
    REQUIRE_FALSE(typo.config);
    std::string e = only_error(typo);
    REQUIRE(e.find("test.toml:4: key 'delivery.allowed_clients'") == 0);
    REQUIRE(e.find("neither an IP group in [ip_groups] nor a network") != std::string::npos);
}

TEST_CASE("delivery.report_languages maps sender domains to report languages", "[config]") {
    auto l = load(std::string(minimal) + "[delivery]\nreport_languages = { \"Example.DE\" = \"de\", \".example.cz\" = \"cs\" }\n");
    for (const auto& e : l.errors) FAIL(e.to_string());
    REQUIRE(l.config->delivery.report_languages == std::map<std::string, std::string>{{"example.de", "de"}, {".example.cz", "cs"}});
    std::string text = render_config(*l.config);
    REQUIRE(render_config(*load(text).config) == text);
    auto bad = load(std::string(minimal) + "[delivery]\nreport_languages = { \"example.de\" = \"../de\" }\n");
    REQUIRE(only_error(bad).find("key 'delivery.report_languages'") != std::string::npos);
    REQUIRE(only_error(bad).find("language tag") != std::string::npos);
    auto wrong = load(std::string(minimal) + "[delivery]\nreport_languages = [\"de\"]\n");
    REQUIRE(only_error(wrong).find("test.toml:4: key 'delivery.report_languages'") == 0);
}

TEST_CASE("a reload names each changed setting, secrets included", "[config]") {
    auto before = load(std::string(minimal) + "[listen]\npolicy = \"inet:127.0.0.1:10040\"\n");
    auto after = load(std::string("[relay]\nlocal_domains = [\"example.test\", \"other.test\"]\n") +
                      "[listen]\npolicy = \"inet:127.0.0.1:10041\"\n[store]\ntype = \"redis\"\n"
                      "[store.redis]\npassword = \"s3cret\"\n[limits.message_rate]\nmax = 7\n");
    REQUIRE(before.config);
    REQUIRE(after.config);
    auto changed = changed_settings(*before.config, *after.config);
    REQUIRE(changed == std::vector<std::string>{"limits.message_rate.max", "listen.policy", "relay.local_domains",
                                                "store.redis.password", "store.type"});
    REQUIRE(changed_settings(*before.config, *before.config).empty());
    ReloadOutcome o{{"relay.local_domains"}, {"listen.policy", "store.type"}};
    REQUIRE(o.text() == "configuration reloaded: changed relay.local_domains; NOT applied, needs a restart (the "
                        "running values stay): listen.policy, store.type");
    REQUIRE(ReloadOutcome{}.text() == "configuration reloaded: nothing changed");
}

TEST_CASE("delivery.origin takes a fully qualified domain", "[config]") {
    REQUIRE(load(std::string(minimal) + "[delivery]\norigin = \"mail.example.org\"\n").config->delivery.origin ==
            "mail.example.org");
    REQUIRE_THAT(only_error(load(std::string(minimal) + "[delivery]\norigin = \"localhost\"\n")),
                 Catch::Contains("delivery.origin") && Catch::Contains("fully qualified"));
    REQUIRE_THAT(only_error(load(std::string(minimal) + "[delivery]\norigin = \"a b.org\"\n")),
                 Catch::Contains("delivery.origin"));
}
