// What relayguard-sendmail adds to mail from local programs, as Postfix's
// cleanup does: the origin domain for bare names, and the From:, Date: and
// Message-ID: a message lacks.
#include <catch2/catch.hpp>

#include <fstream>

#include "delivery/intake/local_submission.h"
#include "temp_dir.h"

using namespace relayguard;

namespace {
const TimePoint at = TimePoint(std::chrono::seconds(1764880000));
}

TEST_CASE("the origin: the setting, else /etc/mailname, else the host's full name", "[submission]") {
    test::TempDir dir;
    std::string mailname = dir.path + "/mailname";
    DeliverySettings s;
    REQUIRE(mail_origin(s, mailname, "host.example.net") == "host.example.net");
    REQUIRE(mail_origin(s, mailname, "host") == "host.localdomain");
    std::ofstream(mailname) << "mail.example.org\n";
    REQUIRE(mail_origin(s, mailname, "host") == "mail.example.org");
    s.origin = "example.com";
    REQUIRE(mail_origin(s, mailname, "host") == "example.com");
}

TEST_CASE("a bare name gets the origin's domain; an address or the null sender stays", "[submission]") {
    REQUIRE(qualified("alice", "example.org") == "alice@example.org");
    REQUIRE(qualified("bob@other.net", "example.org") == "bob@other.net");
    REQUIRE(qualified("", "example.org").empty());
}

TEST_CASE("a message without From, Date and Message-ID gets them", "[submission]") {
    std::string out = with_missing_headers("Subject: hi\r\n\r\nbody\r\n", {"alice@example.org", ""}, at, "Q1",
                                           "example.org");
    REQUIRE(out.rfind("From: alice@example.org\r\nDate: ", 0) == 0);
    REQUIRE(out.find("Message-ID: <Q1@example.org>\r\nSubject: hi\r\n\r\nbody\r\n") != std::string::npos);
}

TEST_CASE("what the message has is kept, in any case of the names", "[submission]") {
    std::string in = "from: Alice <a@x.org>\r\nDATE: Thu, 3 Dec 2026 10:00:00 +0000\r\nMessage-Id: <m@x>\r\n\r\nb\r\n";
    REQUIRE(with_missing_headers(in, {"a@x.org", ""}, at, "Q1", "x.org") == in);
}

TEST_CASE("a From in the body, or a message that starts with its body, gets a header section", "[submission]") {
    std::string out = with_missing_headers("hello there\r\nFrom: not a header\r\n", {"a@x.org", ""}, at, "Q2", "x.org");
    REQUIRE(out.rfind("From: a@x.org\r\n", 0) == 0);
    REQUIRE(out.find("Message-ID: <Q2@x.org>\r\n\r\nhello there\r\n") != std::string::npos);
}

TEST_CASE("the name given with -F is quoted in the From, controls and quotes made safe", "[submission]") {
    std::string out = with_missing_headers("\r\nbody\r\n", {"a@x.org", "Ada \"the\" L\r\novelace"}, at, "Q3", "x.org");
    REQUIRE(out.rfind("From: \"Ada \\\"the\\\" Lovelace\" <a@x.org>\r\n", 0) == 0);
    REQUIRE(out.find("\r\n\r\nbody\r\n") != std::string::npos);
}

TEST_CASE("the null sender adds no From", "[submission]") {
    std::string out = with_missing_headers("Subject: bounce\r\n\r\nx\r\n", {"", ""}, at, "Q4", "x.org");
    REQUIRE(out.find("From:") == std::string::npos);
    REQUIRE(out.rfind("Date: ", 0) == 0);
}
