// The policy server over a real loopback socket, with the engine on memory
// ports: pipelined requests are answered in order, a client that shuts its
// side still gets its answers, half-sent and idle connections are closed by
// their timeouts, one serving thread serves many connections, and stop()
// closes what is open.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"
#include "plugin/frontends/policy_server.h"

using namespace relayguard;
using namespace relayguard::test;
using namespace std::chrono_literals;

namespace {

using Seconds = std::chrono::duration<double>;

std::string request(const std::string& recipient, const std::string& client = "192.0.2.1") {
    return "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + client +
           "\nclient_port=1\nsender=a@b.example\ninstance=i1\nrecipient=" + recipient + "\n\n";
}

const std::string dunno = "action=DUNNO\n\n";
const std::string relay_denied = "action=554 5.7.1 Relay access denied\n\n";

void send_all(const UniqueFd& fd, const std::string& data) {
    REQUIRE(::send(fd.get(), data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

// What the server sent until it closed the connection or `timeout` passed,
// and when it closed it (nothing: still open).
struct Received {
    std::string data;
    std::optional<Seconds> closed_after;
};

Received receive(const UniqueFd& fd, Seconds timeout, std::size_t stop_after_bytes = SIZE_MAX) {
    Received r;
    auto start = std::chrono::steady_clock::now();
    while (r.data.size() < stop_after_bytes) {
        Seconds left = timeout - (std::chrono::steady_clock::now() - start);
        if (left <= 0s) break;
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count() * 1000) + 1) <= 0) continue;
        char buf[4096];
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n <= 0) {
            r.closed_after = std::chrono::steady_clock::now() - start;
            break;
        }
        r.data.append(buf, static_cast<std::size_t>(n));
    }
    return r;
}

// A PolicyServer on 127.0.0.1 and a free port, deciding with base_settings().
struct Served {
    explicit Served(std::uint32_t workers, Duration read_timeout = 10s, Duration idle_timeout = 300s)
        : engine(std::make_shared<DecisionEngine>(base_settings(), store, clock)),
          settings(listen_settings(workers, read_timeout, idle_timeout)),
          server(engine, ledger, settings) {
        UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof addr;
        REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listener.get(), 128) == 0);
        REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &length) == 0);
        port = ntohs(addr.sin_port);
        server.start(std::move(listener));
    }

    static ListenSettings listen_settings(std::uint32_t workers, Duration read_timeout, Duration idle_timeout) {
        ListenSettings s;
        s.workers = workers;
        s.policy_read_timeout = read_timeout;
        s.policy_idle_timeout = idle_timeout;
        return s;
    }

    UniqueFd connect() const {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        return fd;
    }

    MemoryCounterStore store;
    ManualClock clock;
    EngineHolder engine;
    TransactionLedger ledger;
    ListenSettings settings;
    PolicyServer server;
    int port = 0;
};

}  // namespace

TEST_CASE("pipelined requests on one connection are answered in order", "[policy_server]") {
    Served s(4);
    auto fd = s.connect();
    std::string pipelined, expected;
    for (int i = 0; i < 6; ++i) {
        bool local = i % 2 == 0;
        pipelined += request(local ? "u@example.test" : "victim@elsewhere.example");
        expected += local ? dunno : relay_denied;
    }
    send_all(fd, pipelined);
    REQUIRE(receive(fd, 5s, expected.size()).data == expected);
}

TEST_CASE("a client that shuts its sending side still gets every answer", "[policy_server]") {
    Served s(2);
    auto fd = s.connect();
    send_all(fd, request("u@example.test") + request("victim@elsewhere.example") + request("u@example.test"));
    ::shutdown(fd.get(), SHUT_WR);
    Received r = receive(fd, 5s);
    REQUIRE(r.data == dunno + relay_denied + dunno);
    REQUIRE(r.closed_after);
}

TEST_CASE("a malformed request closes its own connection only", "[policy_server]") {
    Served s(2);
    auto bad = s.connect();
    auto good = s.connect();
    send_all(bad, "this is not a policy request\n\n");
    send_all(good, request("u@example.test"));
    Received r = receive(bad, 5s);
    REQUIRE(r.data.empty());
    REQUIRE(r.closed_after);
    REQUIRE(receive(good, 5s, dunno.size()).data == dunno);
}

TEST_CASE("half-sent and idle connections are closed by their timeouts", "[policy_server]") {
    Served s(2, 300ms, 1s);
    auto idle = s.connect();
    auto half = s.connect();
    send_all(half, "request=smtpd_access_policy\nprotocol_state=RCPT\n");
    Received h = receive(half, 5s);
    REQUIRE(h.closed_after);
    REQUIRE(*h.closed_after >= 250ms);
    REQUIRE(*h.closed_after < 900ms);
    // Answered requests leave a connection idle: its timer starts again.
    send_all(idle, request("u@example.test"));
    REQUIRE(receive(idle, 5s, dunno.size()).data == dunno);
    Received i = receive(idle, 5s);
    REQUIRE(i.closed_after);
    REQUIRE(*i.closed_after >= 900ms);
    REQUIRE(*i.closed_after < 3s);
}

TEST_CASE("a request trickled a byte at a time is closed at the read timeout of its first byte", "[policy_server]") {
    // Each byte wakes a serving thread; none of them may start the timer again.
    Served s(2, 600ms, 10s);
    auto trickle = s.connect();
    std::string half = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n";
    auto start = std::chrono::steady_clock::now();
    std::optional<Seconds> closed_after;
    for (char ch : half) {
        if (::send(trickle.get(), &ch, 1, MSG_NOSIGNAL) != 1) break;
        Received r = receive(trickle, 50ms);
        REQUIRE(r.data.empty());
        if (r.closed_after) {
            closed_after = std::chrono::steady_clock::now() - start;
            break;
        }
    }
    if (!closed_after) {
        Received r = receive(trickle, 2s);
        REQUIRE(r.closed_after);
        closed_after = std::chrono::steady_clock::now() - start;
    }
    REQUIRE(*closed_after >= 550ms);
    REQUIRE(*closed_after < 1500ms);
}

TEST_CASE("one serving thread serves many connections, idle ones around it", "[policy_server]") {
    Served s(1);
    std::vector<UniqueFd> idle, asking;
    for (int i = 0; i < 100; ++i) idle.push_back(s.connect());
    for (int i = 0; i < 50; ++i) asking.push_back(s.connect());
    for (auto& fd : asking) send_all(fd, request("u@example.test"));
    for (auto& fd : asking) REQUIRE(receive(fd, 5s, dunno.size()).data == dunno);
}

TEST_CASE("stop() closes every open connection at once", "[policy_server]") {
    Served s(2);
    auto idle = s.connect();
    auto half = s.connect();
    send_all(half, "request=smtpd_access_policy\n");
    REQUIRE(receive(idle, 200ms).data.empty());  // both accepted and waiting
    auto start = std::chrono::steady_clock::now();
    s.server.stop();
    REQUIRE(std::chrono::steady_clock::now() - start < 2s);
    REQUIRE(receive(idle, 2s).closed_after);
    REQUIRE(receive(half, 2s).closed_after);
}
