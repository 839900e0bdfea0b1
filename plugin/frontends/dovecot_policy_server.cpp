// Dovecot's auth policy endpoint; see the header.
#include "plugin/frontends/dovecot_policy_server.h"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include "common/daemon/logging.h"
#include "plugin/frontends/auth_report_log.h"
#include "plugin/frontends/decision_log.h"

namespace relayguard {

namespace {

constexpr int socket_timeout_seconds = 2;
constexpr std::size_t max_body = 16 * 1024;
// Dovecot keeps up to 100 connections to a policy server; each waiting
// connection holds one of these threads until the socket timeout.
constexpr std::size_t serving_threads = 8;

std::string header_part(const std::string& line, bool name) {
    auto colon = line.find(':');
    if (colon == std::string::npos) return {};
    if (name) return line.substr(0, colon);
    auto start = line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? std::string() : line.substr(start);
}

// Compares in time that does not depend on where they first differ.
bool same_secret(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

SessionState session_of(DecisionEngine& engine, const IpAddress& client) {
    SessionState s;
    engine.open_session(s, ConnectFacts{client, "", "dovecot"});
    return s;
}

}  // namespace

DovecotPolicyServer::DovecotPolicyServer(EngineHolder& engine, const AuthEventSettings& settings,
                                         AccountAlert on_account_attack)
    : engine_(engine),
      settings_(settings),
      header_name_(header_part(settings.dovecot_api_header, true)),
      header_value_(header_part(settings.dovecot_api_header, false)),
      on_account_attack_(std::move(on_account_attack)) {
    // cpp-httplib takes ownership of the queue it is handed.
    server_.new_task_queue = [] { return new httplib::ThreadPool(serving_threads); };
    server_.set_read_timeout(socket_timeout_seconds, 0);
    server_.set_write_timeout(socket_timeout_seconds, 0);
    server_.set_keep_alive_timeout(socket_timeout_seconds);
    server_.set_payload_max_length(max_body);
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
        auto answer = handle(req.get_param_value("command"), req.get_header_value(header_name_.c_str()), req.body);
        res.status = answer.status;
        res.set_content(answer.body, "application/json");
    });
}

DovecotPolicyServer::~DovecotPolicyServer() { stop(); }

Status DovecotPolicyServer::bind() {
    const std::string& where = settings_.dovecot_policy;
    auto colon = where.rfind(':');
    std::string host = where.substr(0, colon);
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    int port = std::stoi(where.substr(colon + 1));  // checked at load
    if (!server_.bind_to_port(host.c_str(), port)) return Status::failure("cannot listen on " + where);
    return Done{};
}

void DovecotPolicyServer::start() {
    thread_ = std::thread([this] {
        server_.listen_after_bind();
        serving_ended_ = true;
    });
}

void DovecotPolicyServer::stop() {
    if (!thread_.joinable()) return;
    // cpp-httplib's stop() does nothing until the server runs: a stop right
    // after the start would leave the thread serving and join() waiting.
    while (!server_.is_running() && !serving_ended_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    server_.stop();
    thread_.join();
}

DovecotPolicyServer::Answer DovecotPolicyServer::handle(std::string_view command, std::string_view header_value,
                                                        std::string_view body) {
    if (!same_secret(header_value, header_value_)) {
        security_log()->warn("dovecot-policy: request without the configured {} header refused", header_name_);
        return {401, R"({"status":0,"msg":"unauthorised"})"};
    }
    auto parsed = parse_dovecot_policy_request(command, body);
    if (!parsed) {
        spdlog::warn("dovecot-policy: malformed request ignored: {}", parsed.error());
        return {400, R"({"status":0,"msg":"malformed request"})"};
    }
    auto engine = engine_.current();
    Decision d = parsed->command == DovecotPolicyRequest::Command::allow ? allow(*engine, *parsed)
                                                                         : report(*engine, *parsed);
    return {200, dovecot_policy_answer(d)};
}

Decision DovecotPolicyServer::allow(DecisionEngine& engine, const DovecotPolicyRequest& r) {
    Decision d = engine.on_auth_attempt(r.remote);
    log_decision(session_of(engine, r.remote), d, DecisionContext{"dovecot", "login", {}, {}, {}});
    return d;
}

Decision DovecotPolicyServer::report(DecisionEngine& engine, const DovecotPolicyRequest& r) {
    if (r.policy_reject) return {};  // our own refusal: no password was tried
    apply_auth_report(engine, AuthReport{r.remote, r.login, r.pwhash, r.protocol, r.success}, "dovecot",
                      on_account_attack_);
    return {};
}

}  // namespace relayguard
