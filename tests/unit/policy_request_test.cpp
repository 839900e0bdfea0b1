// The policy delegation request reader: complete requests only, defensive
// limits, and a clear "malformed" instead of a guess.
#include <catch2/catch.hpp>

#include "plugin/frontends/policy_request.h"
#include "plugin/frontends/policy_server.h"

using namespace relayguard;

TEST_CASE("requests end at an empty line and may arrive in pieces", "[policy]") {
    PolicyRequestReader r(4096);
    std::string error;
    r.append("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_addr");
    REQUIRE_FALSE(r.next(error));
    REQUIRE(error.empty());
    r.append("ess=192.0.2.1\nrecipient=a=b@example.test\n\nrequest=smtpd_access_policy\n\n");
    auto first = r.next(error);
    REQUIRE(first);
    REQUIRE(first->get("client_address") == "192.0.2.1");
    REQUIRE(first->get("recipient") == "a=b@example.test");  // only the first '=' splits
    REQUIRE(first->get("missing").empty());
    auto second = r.next(error);
    REQUIRE(second);
    REQUIRE_FALSE(r.next(error));
    REQUIRE_FALSE(r.has_partial());
}

TEST_CASE("CRLF line ends from hand-typed clients are accepted", "[policy]") {
    PolicyRequestReader r(4096);
    std::string error;
    r.append("request=smtpd_access_policy\r\nclient_address=192.0.2.1\r\n\r\n");
    auto req = r.next(error);
    REQUIRE(req);
    REQUIRE(req->get("client_address") == "192.0.2.1");
}

TEST_CASE("malformed requests are refused, not guessed at", "[policy]") {
    std::string error;
    {
        PolicyRequestReader r(4096);
        r.append("garbage\n\n");
        REQUIRE_FALSE(r.next(error));
        REQUIRE(error == "line without name=value");
    }
    {
        PolicyRequestReader r(4096);
        r.append("request=other\n\n");
        REQUIRE_FALSE(r.next(error));
        REQUIRE(error == "not a request=smtpd_access_policy");
    }
    {
        PolicyRequestReader r(100);
        r.append("request=smtpd_access_policy\nsender=" + std::string(200, 'x'));
        REQUIRE_FALSE(r.next(error));
        REQUIRE(error.find("larger than 100") != std::string::npos);
    }
    {
        PolicyRequestReader r(1 << 20);
        std::string many = "request=smtpd_access_policy\n";
        for (int i = 0; i < 300; ++i) many += "a" + std::to_string(i) + "=1\n";
        r.append(many + "\n");
        REQUIRE_FALSE(r.next(error));
        REQUIRE(error.find("attributes") != std::string::npos);
    }
    {
        PolicyRequestReader r(4096);
        static const char with_nul[] = "request=smtpd_access_policy\nsender=a\0b\n\n";
        r.append(std::string(with_nul, sizeof(with_nul) - 1));
        REQUIRE_FALSE(r.next(error));
        REQUIRE(error == "NUL byte in request");
    }
}

TEST_CASE("a repeated attribute keeps its first value", "[policy]") {
    PolicyRequestReader r(4096);
    std::string error;
    r.append("request=smtpd_access_policy\nclient_address=192.0.2.1\nclient_address=10.0.0.1\n\n");
    REQUIRE(r.next(error)->get("client_address") == "192.0.2.1");
}

TEST_CASE("decisions map to Postfix actions", "[policy]") {
    Decision d;
    REQUIRE(PolicyServer::action_for(d) == "action=DUNNO");
    d.verdict = Verdict::permit;
    REQUIRE(PolicyServer::action_for(d) == "action=OK");
    d.verdict = Verdict::reject;
    d.reply = SmtpReply{554, "5.7.1", "Relay access denied"};
    REQUIRE(PolicyServer::action_for(d) == "action=554 5.7.1 Relay access denied");
    d.verdict = Verdict::close;
    d.reply = SmtpReply{421, "4.7.0", "Bye"};
    REQUIRE(PolicyServer::action_for(d) == "action=421 4.7.0 Bye");
}
