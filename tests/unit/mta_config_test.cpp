// Reading an MTA's own configuration (common/mta) and the doctor's checks
// (doctor/), on the text postconf and sendmail.cf really hold; the runs
// against a real Postfix are the e2e tests mta_domains and doctor.
#include <catch2/catch.hpp>

#include "common/base/program_output.h"
#include "common/mta/mta_domains.h"
#include "common/mta/postfix_config.h"
#include "doctor/doctor_checks.h"

using namespace relayguard;

namespace {

Config config_from(const std::string& text) {
    auto l = load_config_text(text, "test.toml");
    REQUIRE(l.config);
    return *l.config;
}

const std::string wired_config = "[relay]\nlocal_domains = [\"example.test\"]\ntrusted_groups = [\"internal\"]\n"
                                 "[ip_groups]\ninternal = [\"127.0.0.0/8\", \"::1/128\"]\n";

PostfixConfig wired_postfix() {
    PostfixConfig pf;
    parse_postconf_params("smtpd_milters = inet:127.0.0.1:8893\n"
                          "milter_default_action = tempfail\n"
                          "milter_command_timeout = 30s\n"
                          "milter_content_timeout = 300s\n"
                          "smtpd_relay_restrictions = reject_unlisted_recipient, check_policy_service "
                          "inet:127.0.0.1:10040, reject_unauth_destination\n"
                          "smtpd_policy_service_default_action = 451 4.3.5 Server configuration problem\n"
                          "smtpd_policy_service_timeout = 100s\n"
                          "mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\n"
                          "smtpd_hard_error_limit = 20\n"
                          "smtpd_sasl_auth_enable = no\n",
                          pf.params);
    pf.services = parse_master_services("smtp       inet  n       -       y       -       -       smtpd\n"
                                        "pickup     unix  n       -       y       60      1       pickup\n");
    return pf;
}

std::vector<std::string> ids(const std::vector<Finding>& findings) {
    std::vector<std::string> out;
    for (const auto& f : findings) out.push_back(f.id);
    return out;
}

}  // namespace

TEST_CASE("Postfix lists split on commas and blanks, never inside braces", "[mta]") {
    REQUIRE(split_postfix_list("$myhostname, localhost.$mydomain,localhost  x") ==
            std::vector<std::string>{"$myhostname", "localhost.$mydomain", "localhost", "x"});
    REQUIRE(split_postfix_list("inline:{ a.test=x, b.test=y } hash:/etc/postfix/v") ==
            std::vector<std::string>{"inline:{ a.test=x, b.test=y }", "hash:/etc/postfix/v"});
    REQUIRE(split_postfix_list("check_policy_service { inet:127.0.0.1:10040, timeout=10s }, permit").size() == 3);
    REQUIRE(split_postfix_list(" ,, ").empty());
}

TEST_CASE("postmap -s keys: domains kept, addresses skipped, lower case", "[mta]") {
    REQUIRE(domain_keys("Example.TEST\tx\nuser@example.test\tu\n@catch.test\tx\n.sub.test ok\n\n") ==
            std::vector<std::string>{"example.test", ".sub.test"});
}

TEST_CASE("sendmail.cf classes w and R, inline and from files", "[mta]") {
    auto s = parse_sendmail_cf("Cwlocalhost mail.example.test\nFw-o /etc/mail/local-host-names\n"
                               "FR-o /etc/mail/relay-domains %[^#]\nCRrelay.test\nCx ignored\nDj$w.Foo\n"
                               "C{w}braced.test\nC{R}relay2.test\nC{Canonify}no.test\n");
    REQUIRE(s.local_names == std::vector<std::string>{"localhost", "mail.example.test", "braced.test"});
    REQUIRE(s.relay_names == std::vector<std::string>{"relay.test", "relay2.test"});
    using File = SendmailDomainSources::File;
    REQUIRE(s.local_files == std::vector<File>{{"/etc/mail/local-host-names", true}});
    REQUIRE(s.relay_files == std::vector<File>{{"/etc/mail/relay-domains", true}});
    REQUIRE(s.own_name.empty());  // Dj$w.Foo is built from macros
    auto named = parse_sendmail_cf("Djmx.example.test\nFw/etc/mail/must-exist\n");
    REQUIRE(named.own_name == "mx.example.test");
    REQUIRE(named.local_files == std::vector<File>{{"/etc/mail/must-exist", false}});
}

TEST_CASE("postconf's outputs parsed: parameters, service overrides, services", "[mta]") {
    PostfixConfig pf;
    parse_postconf_params("a = 1\nempty =\nlist = x, y\n", pf.params);
    parse_postconf_overrides("submission/inet/smtpd_milters =\nsubmission/inet/syslog_name = postfix/sub\n",
                             pf.overrides);
    REQUIRE(pf.value("a") == "1");
    REQUIRE(pf.value("empty").empty());
    REQUIRE(pf.value("list") == "x, y");
    pf.params["smtpd_milters"] = "inet:127.0.0.1:8893";
    REQUIRE(pf.value("smtpd_milters", "submission/inet").empty());  // the override wins, even empty
    REQUIRE(pf.value("smtpd_milters", "smtp/inet") == "inet:127.0.0.1:8893");
    auto services = parse_master_services("smtp inet n - y - - smtpd\n#x\nsubmission inet n - y - - smtpd -o a=b\n");
    REQUIRE(services.size() == 2);
    REQUIRE(services[1].name == "submission");
    REQUIRE(services[1].command == "smtpd");
}

TEST_CASE("a helper program's output, exit status and time limit", "[mta]") {
    auto ok = run_program({"sh", "-c", "echo out; echo err >&2; exit 3"}, std::chrono::milliseconds(5000), 1000);
    REQUIRE(ok);
    REQUIRE(ok->out == "out\n");
    REQUIRE(ok->err == "err\n");
    REQUIRE(ok->exit_status == 3);
    auto slow = run_program({"sleep", "5"}, std::chrono::milliseconds(200), 1000);
    REQUIRE_FALSE(slow);
    REQUIRE_THAT(slow.error(), Catch::Contains("no answer within 200 ms"));
    auto chatty = run_program({"sh", "-c", "yes"}, std::chrono::milliseconds(5000), 100000);
    REQUIRE_FALSE(chatty);
    REQUIRE_THAT(chatty.error(), Catch::Contains("more than 100000 bytes"));
    REQUIRE_FALSE(run_program({"no-such-program-here"}, std::chrono::milliseconds(100), 10));
}

TEST_CASE("the doctor's small readers: Postfix times and socket names", "[doctor]") {
    REQUIRE(postfix_seconds("30s") == 30);
    REQUIRE(postfix_seconds("100") == 100);
    REQUIRE(postfix_seconds("5m") == 300);
    REQUIRE(postfix_seconds("1h") == 3600);
    REQUIRE(postfix_seconds("x") == -1);
    REQUIRE(same_socket("inet:localhost:8893", "inet:127.0.0.1:8893"));
    REQUIRE(same_socket("inet:[::1]:8893", "inet:127.0.0.1:8893"));
    REQUIRE_FALSE(same_socket("inet:127.0.0.1:8894", "inet:127.0.0.1:8893"));
    REQUIRE(same_socket("unix:/run/relayguard/milter.sock", "unix:/run/relayguard/milter.sock"));
    REQUIRE(same_sendmail_socket("inet:8893@127.0.0.1", "inet:127.0.0.1:8893"));
    REQUIRE(same_sendmail_socket("local:/run/rg.sock", "unix:/run/rg.sock"));
    REQUIRE_FALSE(same_sendmail_socket("inet:8893@192.0.2.1", "inet:127.0.0.1:8893"));
}

TEST_CASE("a Postfix wired as the snippet says has nothing to report", "[doctor]") {
    auto findings = check_postfix(wired_postfix(), config_from(wired_config), nullptr);
    REQUIRE(ids(findings).empty());
}

TEST_CASE("each trap is found, with the command that mends it", "[doctor]") {
    auto config = config_from(wired_config);
    SECTION("a permit before the policy service") {
        auto pf = wired_postfix();
        pf.params["smtpd_relay_restrictions"] =
            "permit_mynetworks, permit_sasl_authenticated, check_policy_service inet:127.0.0.1:10040, "
            "defer_unauth_destination";
        auto f = check_postfix(pf, config, nullptr);
        REQUIRE(ids(f) == std::vector<std::string>{"permit-before-policy"});
        REQUIRE(f[0].severity == Severity::error);
        REQUIRE(f[0].command ==
                "postconf -e 'smtpd_relay_restrictions = reject_unlisted_recipient, check_policy_service "
                "inet:127.0.0.1:10040, permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination'");
    }
    SECTION("a milter that fails open, per milter or for all") {
        auto pf = wired_postfix();
        pf.params["milter_default_action"] = "accept";
        REQUIRE(ids(check_postfix(pf, config, nullptr)) == std::vector<std::string>{"milter-fails-open"});
        pf = wired_postfix();
        pf.params["smtpd_milters"] = "{ inet:127.0.0.1:8893, default_action = accept }";
        REQUIRE(ids(check_postfix(pf, config, nullptr)) == std::vector<std::string>{"milter-fails-open"});
    }
    SECTION("a policy service that fails open, and timeouts shorter than a stage") {
        auto pf = wired_postfix();
        pf.params["smtpd_policy_service_default_action"] = "DUNNO";
        pf.params["milter_command_timeout"] = "5s";
        pf.params["smtpd_policy_service_timeout"] = "10s";
        REQUIRE(ids(check_postfix(pf, config, nullptr)) ==
                std::vector<std::string>{"milter-timeout", "policy-fails-open", "policy-timeout"});
    }
    SECTION("nothing wired at all, on Debian's stock restrictions") {
        auto pf = wired_postfix();
        pf.params["smtpd_milters"] = "";
        pf.params["smtpd_relay_restrictions"] = "permit_mynetworks permit_sasl_authenticated defer_unauth_destination";
        auto f = check_postfix(pf, config, nullptr);
        REQUIRE(ids(f) == std::vector<std::string>{"milter-missing", "policy-missing"});
        REQUIRE(f[0].severity == Severity::error);
        REQUIRE(f[0].command == "postconf -e 'smtpd_milters = inet:127.0.0.1:8893'");
    }
    SECTION("no reject_unauth_destination anywhere") {
        auto pf = wired_postfix();
        pf.params["smtpd_relay_restrictions"] = "check_policy_service inet:127.0.0.1:10040, permit";
        REQUIRE(ids(check_postfix(pf, config, nullptr)) == std::vector<std::string>{"no-unauth-destination"});
    }
    SECTION("a submission service without the milter, AUTH before TLS on port 25") {
        auto pf = wired_postfix();
        pf.services.push_back({"submission", "inet", "smtpd"});
        pf.overrides["submission/inet"]["smtpd_milters"] = "";
        pf.overrides["submission/inet"]["smtpd_tls_security_level"] = "encrypt";
        pf.overrides["submission/inet"]["smtpd_sasl_auth_enable"] = "yes";
        pf.params["smtpd_sasl_auth_enable"] = "yes";
        auto f = check_postfix(pf, config, nullptr);
        REQUIRE(ids(f) == std::vector<std::string>{"auth-without-tls", "service-without-milter"});
        REQUIRE_THAT(f[0].message, Catch::Contains("smtp/inet"));
        REQUIRE(f[1].command == "postconf -P 'submission/inet/smtpd_milters=inet:127.0.0.1:8893'");
        pf.overrides["submission/inet"]["smtpd_milters"] = "inet:127.0.0.1:9999";
        REQUIRE(check_postfix(pf, config, nullptr)[1].command ==
                "postconf -P 'submission/inet/smtpd_milters=inet:127.0.0.1:9999,inet:127.0.0.1:8893'");
    }
    SECTION("a submission service with lists of its own, as Debian's template has them") {
        auto pf = wired_postfix();
        pf.services.push_back({"submission", "inet", "smtpd"});
        pf.overrides["submission/inet"]["smtpd_relay_restrictions"] = "permit_sasl_authenticated,reject";
        auto f = check_postfix(pf, config, nullptr);
        REQUIRE(ids(f) == std::vector<std::string>{"service-without-policy"});
        REQUIRE(f[0].command == "postconf -P 'submission/inet/smtpd_relay_restrictions=reject_unlisted_recipient,"
                                "check_policy_service,inet:127.0.0.1:10040,permit_sasl_authenticated,reject'");
        pf.overrides["submission/inet"]["smtpd_relay_restrictions"] =
            "permit_sasl_authenticated,check_policy_service,inet:127.0.0.1:10040,reject";
        REQUIRE(ids(check_postfix(pf, config, nullptr)) == std::vector<std::string>{"permit-before-policy"});
    }
    SECTION("a content filter's re-injection port is left alone; no_milters is no milter") {
        auto pf = wired_postfix();
        pf.services.push_back({"127.0.0.1:10025", "inet", "smtpd"});
        pf.overrides["127.0.0.1:10025/inet"]["content_filter"] = "";
        pf.overrides["127.0.0.1:10025/inet"]["smtpd_milters"] = "";
        pf.overrides["127.0.0.1:10025/inet"]["smtpd_relay_restrictions"] = "permit_mynetworks,reject";
        REQUIRE(ids(check_postfix(pf, config, nullptr)).empty());
        pf.services.push_back({"submission", "inet", "smtpd"});
        pf.overrides["submission/inet"]["receive_override_options"] = "no_milters";
        auto f = check_postfix(pf, config, nullptr);
        REQUIRE(ids(f) == std::vector<std::string>{"service-without-milter"});
        REQUIRE(f[0].command.empty());
    }
    SECTION("a relay list closed by a plain reject is closed") {
        auto pf = wired_postfix();
        pf.params["smtpd_relay_restrictions"] = "check_policy_service inet:127.0.0.1:10040, reject";
        REQUIRE(ids(check_postfix(pf, config, nullptr)).empty());
    }
    SECTION("mynetworks that relayguard does not trust") {
        auto pf = wired_postfix();
        pf.params["mynetworks"] = "127.0.0.0/8 192.168.0.0/16 [2001:db8::]/32";
        auto f = check_postfix(pf, config, nullptr);
        REQUIRE(ids(f) == std::vector<std::string>{"mynetworks-not-trusted"});
        REQUIRE_THAT(f[0].message, Catch::Contains("192.168.0.0/16, 2001:db8::/32"));
    }
    SECTION("relayguard's limits above Postfix's, and domains that disagree") {
        auto pf = wired_postfix();
        auto loose = config_from(wired_config + "[limits.failed_commands]\nmax = 100\n");
        MtaDomains d;
        d.domains = {{"example.test", false}, {"virtual.test", false}};
        auto f = check_postfix(pf, loose, &d);
        REQUIRE(ids(f) == std::vector<std::string>{"domain-missing", "limit-above-postfix"});
        REQUIRE_THAT(f[0].message, Catch::Contains("virtual.test"));
        d.domains = {{"other.test", false}};
        REQUIRE(ids(check_postfix(pf, config, &d)) ==
                std::vector<std::string>{"domain-missing", "domain-unknown-to-mta"});
    }
}

TEST_CASE("Sendmail: the filter missing, failing open, not enabled, too impatient", "[doctor]") {
    auto config = config_from(wired_config);
    std::string good = "O InputMailFilters=relayguard\nXrelayguard, S=inet:8893@127.0.0.1, F=T, T=C:10s;S:20s;R:20s;E:60s\n";
    REQUIRE(check_sendmail(good, config, nullptr).empty());
    REQUIRE(ids(check_sendmail("O InputMailFilters=\n", config, nullptr)) == std::vector<std::string>{"milter-missing"});
    REQUIRE(ids(check_sendmail("O InputMailFilters=relayguard\nXrelayguard, S=inet:8893@127.0.0.1\n", config,
                               nullptr)) == std::vector<std::string>{"milter-fails-open", "milter-timeout"});
    REQUIRE(ids(check_sendmail("Xrelayguard, S=inet:8893@localhost, F=T, T=R:20s\n", config, nullptr)) ==
            std::vector<std::string>{"milter-not-enabled"});
}
