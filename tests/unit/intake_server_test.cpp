// The relay client's SMTP/LMTP intake, spoken to over loopback: each verb of
// its command table, the refusals a confused or hostile client meets, and
// LMTP's reply per recipient. The queue is a vector here: what is taken is
// what would be written.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>

#include "delivery/intake/intake_server.h"
#include "policy/ip_group.h"

using namespace relayguard;

namespace {

// An IntakeServer on 127.0.0.1 and an ephemeral port.
struct Intake {
    std::mutex mutex;
    std::vector<QueuedMessage> queued;
    bool full = false;
    int port = 0;
    ManualClock clock{TimePoint(Duration(1'700'000'000'000))};  // 14 Nov 2023, 22:13 UTC
    IntakeServer server{1000, {IpGroup{"loopback", {*Cidr::parse("127.0.0.0/8")}}},
                        [this](QueuedMessage m) {
                            std::lock_guard lock(mutex);
                            queued.push_back(std::move(m));
                            return Result<std::string>("Q" + std::to_string(queued.size()));
                        },
                        [this](std::uint64_t) { return full; }, clock};
    Intake() {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd, 8) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
        server.start(UniqueFd(fd));
    }
};

// A client that sends a line and reads one whole reply (its last line).
class Client {
public:
    explicit Client(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        timeval tv{5, 0};
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    std::string send(const std::string& line) {
        std::string out = line + "\r\n";
        ::send(fd_.get(), out.data(), out.size(), MSG_NOSIGNAL);
        return reply();
    }
    // The next reply's last line ("" once the server has closed).
    std::string reply() {
        for (;;) {
            auto nl = buf_.find("\r\n");
            if (nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 2);
                if (line.size() > 3 && line[3] == '-') continue;  // a continuation
                return line;
            }
            char chunk[4096];
            ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
            if (n <= 0) return "";
            buf_.append(chunk, static_cast<std::size_t>(n));
        }
    }

private:
    UniqueFd fd_;
    std::string buf_;
};

bool starts(const std::string& reply, const char* code) { return reply.rfind(code, 0) == 0; }

}  // namespace

TEST_CASE("intake: a whole SMTP transaction is queued with its DSN parameters", "[delivery][intake]") {
    Intake intake;
    Client c(intake.port);
    REQUIRE(starts(c.reply(), "220"));
    REQUIRE(c.send("EHLO client.test") == "250 ENHANCEDSTATUSCODES");
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org> RET=HDRS ENVID=abc SIZE=100"), "250"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net"), "250"));
    REQUIRE(starts(c.send("DATA"), "354"));
    REQUIRE(c.send("Subject: hi\r\n\r\n..dotted\r\n.") == "250 2.0.0 Ok: queued as Q1");
    REQUIRE(starts(c.send("QUIT"), "221"));
    REQUIRE(c.reply().empty());  // closed
    std::lock_guard lock(intake.mutex);
    REQUIRE(intake.queued.size() == 1);
    const auto& m = intake.queued[0];
    REQUIRE(m.sender == "a@example.org");
    REQUIRE(m.ret == "HDRS");
    REQUIRE(m.envid == "abc");
    REQUIRE(m.recipients.size() == 1);
    REQUIRE(m.recipients[0].notify == "SUCCESS,FAILURE");
    REQUIRE(m.recipients[0].orcpt == "rfc822;b@example.net");
    REQUIRE(m.content.rfind("Received: from client.test (127.0.0.1)\r\n\tby relayguard-relayd with ESMTP; ", 0) == 0);
    // Dated by the clock it was given, in local time (the day may differ by zone).
    REQUIRE(m.content.find(" Nov 2023 ") != std::string::npos);
    REQUIRE(m.content.find("\r\n.dotted\r\n") != std::string::npos);  // unstuffed
}

TEST_CASE("intake: commands out of order, unknown or malformed are refused and the session goes on",
          "[delivery][intake]") {
    Intake intake;
    Client c(intake.port);
    c.reply();
    REQUIRE(starts(c.send("HELO client.test"), "250"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net>"), "503 5.5.1"));
    REQUIRE(starts(c.send("DATA"), "503 5.5.1"));
    REQUIRE(starts(c.send("VRFY root"), "502 5.5.2"));
    REQUIRE(starts(c.send("MAIL <a@example.org>"), "502 5.5.2"));  // MAIL without FROM:
    REQUIRE(starts(c.send("MAIL FROM:a@example.org>"), "501 5.1.7"));
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org> RET=BODY"), "501 5.5.4"));
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org> SIZE=-1"), "501 5.5.4"));
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org> SIZE=1001"), "552 5.3.4"));
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org> ENVID=a+ZZb"), "501 5.5.4"));
    // Several bad parameters: the last one's reply, as before the command table.
    REQUIRE(c.send("MAIL FROM:<a@example.org> SIZE=2000 RET=BODY") == "501 5.5.4 Bad RET parameter");
    REQUIRE(starts(c.send("mail from:<a@example.org>"), "250"));  // verbs in any case
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org>"), "503 5.5.1"));  // nested
    REQUIRE(starts(c.send("RCPT TO:<>"), "501 5.1.3"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net> NOTIFY=SOMETIMES"), "501 5.5.4"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net> ORCPT=nonsense"), "501 5.5.4"));
    REQUIRE(starts(c.send("NOOP"), "250"));
    REQUIRE(starts(c.send("RSET"), "250"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net>"), "503 5.5.1"));  // RSET ended the envelope
    // A message over the limit is read to its end and refused, not queued.
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org>"), "250"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net>"), "250"));
    REQUIRE(starts(c.send("DATA"), "354"));
    REQUIRE(starts(c.send(std::string(1200, 'x') + "\r\n."), "552 5.3.4"));
    REQUIRE(starts(c.send("QUIT"), "221"));
    std::lock_guard lock(intake.mutex);
    REQUIRE(intake.queued.empty());
}

TEST_CASE("intake: a full queue answers MAIL with 452 and takes nothing", "[delivery][intake]") {
    Intake intake;
    intake.full = true;
    Client c(intake.port);
    c.reply();
    REQUIRE(starts(c.send("EHLO client.test"), "250"));
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org>"), "452 4.3.1"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net>"), "503"));
}

TEST_CASE("intake: LMTP answers DATA once per recipient", "[delivery][intake]") {
    Intake intake;
    Client c(intake.port);
    c.reply();
    REQUIRE(starts(c.send("LHLO client.test"), "250"));
    REQUIRE(starts(c.send("MAIL FROM:<a@example.org>"), "250"));
    REQUIRE(starts(c.send("RCPT TO:<b@example.net>"), "250"));
    REQUIRE(starts(c.send("RCPT TO:<c@example.net>"), "250"));
    REQUIRE(starts(c.send("DATA"), "354"));
    REQUIRE(c.send("Subject: x\r\n\r\nbody\r\n.") == "250 2.0.0 Ok: queued as Q1");
    REQUIRE(c.reply() == "250 2.0.0 Ok: queued as Q1");  // the second recipient's
    std::lock_guard lock(intake.mutex);
    REQUIRE(intake.queued.at(0).content.find("with LMTP;") != std::string::npos);
}
