// The policy delegation server. Postfix sends one request per RCPT TO (and
// per END-OF-MESSAGE when so configured) over a connection it keeps open for
// many SMTP sessions, so a connection is not a session: the SMTP session is
// told apart by client address and port, the transaction by `instance`.
#include "plugin/policy_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "common/logging.h"
#include "plugin/decision_log.h"
#include "plugin/policy_request.h"

namespace relayguard {
namespace {

std::optional<std::uint64_t> number(std::string_view v) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || v.empty()) return std::nullopt;
    return n;
}

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// What one policy connection remembers between requests.
struct PolicyConnection {
    std::string session_key;  // client address and port of the SMTP session
    std::string instance;     // the current transaction
    SessionState session;
    Decision mail_decision;
    // This service counted the current transaction at its first RCPT; its
    // END-OF-MESSAGE, if Postfix asks there too, does not count it again.
    bool counted_at_rcpt = false;
};

}  // namespace

PolicyServer::PolicyServer(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings)
    : engine_(engine), ledger_(ledger), settings_(settings) {}

PolicyServer::~PolicyServer() { stop(); }

std::string PolicyServer::action_for(const Decision& d) {
    switch (d.verdict) {
        case Verdict::proceed: return "action=DUNNO";
        case Verdict::permit: return "action=OK";
        case Verdict::discard: return "action=DISCARD " + d.reply.text;
        case Verdict::reject:
        case Verdict::tempfail:
        case Verdict::close:
            // Postfix passes "NNN X.Y.Z text" through; 421 also disconnects.
            return "action=" + d.reply.to_string();
    }
    return "action=DUNNO";
}

void PolicyServer::start(UniqueFd listener) {
    listener_ = std::move(listener);
    acceptor_ = std::thread([this] { accept_loop(); });
}

void PolicyServer::stop() {
    if (stopping_.exchange(true)) return;
    if (listener_) ::shutdown(listener_.get(), SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    std::list<std::thread> workers;
    {
        std::lock_guard lock(mutex_);
        for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
        workers.swap(workers_);
    }
    for (auto& t : workers) t.join();
}

void PolicyServer::accept_loop() {
    std::uint64_t next_id = 0;
    while (!stopping_) {
        pollfd p{listener_.get(), POLLIN, 0};
        if (::poll(&p, 1, 500) <= 0) continue;
        int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        std::lock_guard lock(mutex_);
        // Reap the threads of connections that ended.
        for (auto it = workers_.begin(); it != workers_.end();) {
            if (std::find(finished_.begin(), finished_.end(), it->get_id()) != finished_.end()) {
                finished_.remove(it->get_id());
                it->join();
                it = workers_.erase(it);
            } else {
                ++it;
            }
        }
        if (open_fds_.size() >= settings_.workers) {
            spdlog::warn("policy: {} connections open, the limit (listen.workers); refusing a new one", open_fds_.size());
            ::close(fd);
            continue;
        }
        open_fds_.insert(fd);
        workers_.emplace_back([this, fd, id = ++next_id] { serve(fd, id); });
    }
}

void PolicyServer::serve(int fd, std::uint64_t id) {
    UniqueFd owned(fd);
    PolicyRequestReader reader(settings_.policy_max_request);
    PolicyConnection conn;
    char buf[4096];
    std::string error;
    bool open = true;
    while (open && !stopping_) {
        ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        reader.append(std::string_view(buf, static_cast<std::size_t>(n)));
        while (open) {
            auto req = reader.next(error);
            if (!error.empty()) {
                spdlog::warn("policy: connection {} closed: malformed request: {}", id, error);
                open = false;
                break;
            }
            if (!req) break;

            auto client = IpAddress::parse(req->get("client_address"));
            if (!client) {
                spdlog::warn("policy: connection {}: unusable client_address \"{}\"; answering DUNNO", id,
                             std::string(req->get("client_address")).substr(0, 64));
                open = write_all(fd, "action=DUNNO\n\n");
                continue;
            }
            // The engine in force for this request: a reload never changes it midway.
            auto engine = engine_.current();
            auto started = std::chrono::steady_clock::now();
            std::string state(req->get("protocol_state"));
            std::string sender(req->get("sender"));
            std::string recipient(req->get("recipient"));
            std::string session_key = client->to_string() + "/" + std::string(req->get("client_port"));
            if (session_key != conn.session_key) {
                conn = PolicyConnection{};
                conn.session_key = session_key;
                engine->open_session(conn.session, ConnectFacts{*client, std::string(req->get("client_name")),
                                                                "policy-" + std::to_string(id) + "-" + session_key});
            }
            std::string sasl_user(req->get("sasl_username"));
            if (!sasl_user.empty()) engine->on_auth(conn.session, AuthFacts{true, sasl_user, std::string(req->get("sasl_method"))});

            Decision d;
            std::string instance(req->get("instance"));
            bool new_transaction = instance != conn.instance || instance.empty();
            if (new_transaction && (state == "MAIL" || state == "RCPT")) {
                conn.instance = instance;
                auto size = number(req->get("size"));
                MailFacts mail{sender, size && *size > 0 ? size : std::nullopt, sasl_user};
                mail.rate_checked_elsewhere = ledger_.mail_checked_elsewhere(session_key, instance, engine->now());
                // Without the milter, nothing tells us whether Postfix will
                // ask at END-OF-MESSAGE: the message counts here, once.
                mail.count_at_check = !mail.rate_checked_elsewhere;
                conn.counted_at_rcpt = mail.count_at_check;
                conn.mail_decision = engine->on_mail(conn.session, mail);
                log_decision(conn.session, conn.mail_decision, {"policy", "mail", sender, "", started});
            }
            if (state == "MAIL") {
                d = conn.mail_decision;
                d.warnings.clear();  // logged above
            } else if (state == "RCPT") {
                if (conn.mail_decision.refused()) {
                    d = conn.mail_decision;
                    d.warnings.clear();
                } else {
                    d = engine->on_rcpt(conn.session, RcptFacts{recipient, false, "", ""});
                    log_decision(conn.session, d, {"policy", "rcpt", sender, recipient, started});
                }
            } else if (state == "END-OF-MESSAGE") {
                auto size = number(req->get("size"));
                auto count = number(req->get("recipient_count"));
                EomFacts eom{size, static_cast<std::uint32_t>(count.value_or(0))};
                eom.counted_elsewhere =
                    !ledger_.first_to_count(session_key, std::string(req->get("queue_id")), engine->now()) ||
                    conn.counted_at_rcpt;
                conn.counted_at_rcpt = false;
                d = engine->on_eom(conn.session, eom);
                log_decision(conn.session, d, {"policy", "eom", sender, "", started});
                conn.instance.clear();
            }
            open = write_all(fd, action_for(d) + "\n\n");
        }
    }
    std::lock_guard lock(mutex_);
    open_fds_.erase(fd);
    finished_.push_back(std::this_thread::get_id());
}

}  // namespace relayguard
