// Dovecot's auth policy requests: what is parsed, what is refused, and the
// endpoint's answers without a socket (its HTTP side is tested end to end).
#include <catch2/catch.hpp>

#include "harness.h"
#include "plugin/frontends/dovecot_policy_server.h"

using namespace relayguard;
using namespace relayguard::test;

TEST_CASE("a Dovecot report is read with its outcome; bad ones are refused with a reason", "[dovecot]") {
    auto r = parse_dovecot_policy_request(
        "report", R"({"login":"u1","pwhash":"3f2","remote":"192.0.2.7","device_id":"","protocol":"smtp",)"
                  R"("session_id":"x","success":false,"policy_reject":false,"tls":"secured"})");
    REQUIRE(r);
    REQUIRE(r->command == DovecotPolicyRequest::Command::report);
    REQUIRE(r->remote == ip("192.0.2.7"));
    REQUIRE((r->login == "u1" && r->pwhash == "3f2" && r->protocol == "smtp"));
    REQUIRE_FALSE(r->success);

    auto allow = parse_dovecot_policy_request("allow", R"({"remote":"::ffff:192.0.2.8","login":"u2"})");
    REQUIRE(allow);
    REQUIRE(allow->remote == ip("192.0.2.8"));  // IPv4-mapped folds to IPv4

    auto fails = [](std::string_view command, std::string_view body) {
        auto p = parse_dovecot_policy_request(command, body);
        REQUIRE_FALSE(p);
        return p.error();
    };
    REQUIRE(fails("report", R"({"remote":"192.0.2.7","login":"u1"})") == "a report without a boolean success");
    REQUIRE(fails("allow", R"({"login":"u1"})").find("remote is not an IP address") == 0);
    REQUIRE(fails("allow", R"({"remote":"192.0.2.7","login":"u\n1"})") == "login holds a control character");
    REQUIRE(fails("allow", R"({"remote":"192.0.2.7","login":5})") == "login is not a string");
    REQUIRE(fails("allow", R"([1,2])") == "the body is not a JSON object");
    REQUIRE(fails("allow", "{\"remote\":") == "the body is not a JSON object");
    REQUIRE(fails("delete", R"({"remote":"192.0.2.7"})") == "unknown command (expected allow or report)");
    REQUIRE(fails("allow", R"({"remote":"192.0.2.7","login":")" + std::string(300, 'x') + "\"}") ==
            "login is longer than 256");
}

TEST_CASE("the endpoint answers only requests with the secret header, and refuses a blocked client", "[dovecot]") {
    auto settings = base_settings();
    settings.limits.auth_failures.max = 2;
    settings.limits.auth_failures.reported = true;
    Harness h(settings);
    EngineHolder holder(std::shared_ptr<DecisionEngine>(&h.engine, [](DecisionEngine*) {}));
    AuthEventSettings events;
    events.dovecot_policy = "127.0.0.1:1";
    events.dovecot_api_header = "Authorization: Basic c2VjcmV0";
    int alerts = 0;
    DovecotPolicyServer server(holder, events, [&](const std::string&, std::uint32_t, const IpAddress&) { ++alerts; });

    const std::string failure = R"({"remote":"192.0.2.9","login":"u1","pwhash":"P","protocol":"imap","success":false})";
    REQUIRE(server.handle("report", "", failure).status == 401);
    REQUIRE(server.handle("report", "Basic c2VjcmV1", failure).status == 401);
    REQUIRE(server.handle("report", "Basic c2VjcmV0x", failure).status == 401);
    REQUIRE(server.handle("report", "Basic c2VjcmV0", "not json").status == 400);
    // None of those counted.
    auto ask = R"({"remote":"192.0.2.9","login":"u1"})";
    REQUIRE(server.handle("allow", "Basic c2VjcmV0", ask).body == R"({"msg":"","status":0})");

    REQUIRE(server.handle("report", "Basic c2VjcmV0", failure).status == 200);
    auto second = R"({"remote":"192.0.2.9","login":"u1","pwhash":"Q","protocol":"imap","success":false})";
    REQUIRE(server.handle("report", "Basic c2VjcmV0", second).status == 200);
    auto answer = server.handle("allow", "Basic c2VjcmV0", ask);
    REQUIRE(answer.status == 200);
    REQUIRE(answer.body == R"({"msg":"Client blocked: too many failed logins; try again later","status":-1})");
    // A failure Dovecot reports as our own refusal tried no password: not counted again.
    auto refused = R"({"remote":"192.0.2.10","login":"u1","pwhash":"R","success":false,"policy_reject":true})";
    for (int i = 0; i < 3; ++i) REQUIRE(server.handle("report", "Basic c2VjcmV0", refused).status == 200);
    REQUIRE(server.handle("allow", "Basic c2VjcmV0", R"({"remote":"192.0.2.10"})").body == R"({"msg":"","status":0})");
    REQUIRE(alerts == 0);
}
