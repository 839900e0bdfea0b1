// Alert mail; see the header.
#include "plugin/ops/alert_mailer.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "common/base/system_clock.h"
#include "common/net/smtp_client.h"
#include "common/base/text_codec.h"

namespace relayguard {

namespace {

constexpr std::size_t max_waiting = 100;
constexpr auto send_timeout = std::chrono::seconds(10);

std::string local_host_name() {
    char h[256] = {};
    ::gethostname(h, sizeof h - 1);
    return h;
}

// Text that came from a client, made safe for a header or one body line.
std::string one_line(std::string_view v) {
    std::string out;
    for (char c : v.substr(0, 300)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    return out;
}

}  // namespace

AlertMailer::AlertMailer(AlertSettings settings, const Clock& clock)
    : settings_(std::move(settings)),
      clock_(clock),
      host_(local_host_name()),
      sender_(settings_.sender.empty() ? "relayguard@" + host_ : settings_.sender),
      throttle_(settings_.per_client_interval, settings_.max_per_hour) {
    if (!settings_.recipients.empty()) worker_ = std::thread([this] { run(); });
}

AlertMailer::~AlertMailer() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
}

void AlertMailer::on_refusal(const SessionState& s, const Decision& d, std::string_view stage) {
    AlertEvent event;
    std::string what;
    if (d.rule == "unknown_recipients") {
        event = AlertEvent::harvest_block;
        what = "was blocked for trying unknown recipients (directory harvest)";
    } else if (d.rule == "auth_failures") {
        event = AlertEvent::login_block;
        what = "was blocked for failed logins (password guessing)";
    } else if (d.rule == "message_rate") {
        event = AlertEvent::rate_limit;
        what = "exceeded its message rate";
    } else {
        return;
    }
    if (!settings_.wants(event)) return;
    std::string client = s.client.to_string();
    std::string body = "relayguard on " + host_ + ": the client " + client + " " + what + ".\r\n\r\n" +
                       "event=" + to_string(event) + " client=" + client + " key=" + s.client_key +
                       " rule=" + d.rule + " stage=" + std::string(stage) + " detail=\"" + one_line(d.detail) +
                       "\" reply=\"" + one_line(d.reply.to_string()) + "\"\r\n";
    if (!s.client_name.empty()) body += "client_name=\"" + one_line(s.client_name) + "\"\r\n";
    raise(event, s.client_key, "[relayguard] " + std::string(to_string(event)) + ": " + client + " on " + host_,
          std::move(body));
}

void AlertMailer::on_account_attack(const std::string& user, std::uint32_t networks, const IpAddress& last_client) {
    if (!settings_.wants(AlertEvent::account_attack)) return;
    std::string who = one_line(user);
    std::string body = "relayguard on " + host_ + ": logins to the account \"" + who + "\" failed from " +
                       std::to_string(networks) +
                       " client networks within the window: its password is being guessed from many places. "
                       "The account is not blocked (its owner would be locked out); check its password.\r\n\r\n" +
                       "event=account_attack user=\"" + who + "\" networks=" + std::to_string(networks) +
                       " last_client=" + last_client.to_string() + "\r\n";
    raise(AlertEvent::account_attack, "user:" + user,
          "[relayguard] account_attack: " + who + " on " + host_, std::move(body));
}

void AlertMailer::on_account_compromised(const std::string& user, const std::string& reason, const IpAddress& client) {
    if (!settings_.wants(AlertEvent::account_compromised)) return;
    std::string who = one_line(user);
    std::string body = "relayguard on " + host_ + ": the account \"" + who + "\" is marked compromised: " +
                       one_line(reason) +
                       ".\r\n\r\nIts mail is now held in the MTA's hold queue, not delivered. Check the account "
                       "(change its password), then:\r\n  relayguardctl user show " + who +
                       "\r\n  relayguardctl user release " + who + "   (lift the mark, release the held mail)\r\n" +
                       "  relayguardctl user clear " + who + "     (lift the mark, leave the mail held)\r\n\r\n" +
                       "event=account_compromised user=\"" + who + "\" client=" + client.to_string() +
                       " reason=\"" + one_line(reason) + "\"\r\n";
    raise(AlertEvent::account_compromised, "user:" + user,
          "[relayguard] account_compromised: " + who + " on " + host_, std::move(body));
}

void AlertMailer::on_store_change(bool lost, const std::string& store, const std::string& why) {
    if (!settings_.wants(AlertEvent::store_lost)) return;
    std::string body = "relayguard on " + host_ + ": " + store +
                       (lost ? " cannot be reached (" + one_line(why) +
                                   "). Limits are now counted as store.fail_mode says, until it is back."
                             : " is reachable again; counting is shared by every node once more.") +
                       "\r\n\r\nevent=store_lost state=" + (lost ? "lost" : "back") + " store=\"" + store + "\"\r\n";
    // Losing and regaining are throttled apart, and each makes the other
    // news again: a second outage within the hour is told too.
    {
        std::lock_guard lock(mutex_);
        throttle_.forget(AlertEvent::store_lost, lost ? "back" : "lost");
    }
    raise(AlertEvent::store_lost, lost ? "lost" : "back",
          "[relayguard] store_lost: " + store + (lost ? " unreachable" : " back") + " on " + host_, std::move(body));
}

void AlertMailer::raise(AlertEvent event, const std::string& key, std::string subject, std::string body) {
    std::lock_guard lock(mutex_);
    auto held = throttle_.admit(event, key, clock_.now());
    if (!held) {
        spdlog::debug("alert: {} about {} held back by the throttle", to_string(event), key);
        return;
    }
    if (queue_.size() >= max_waiting) {
        spdlog::error("alert: {} about {} dropped: {} alerts already wait to be sent", to_string(event), key, max_waiting);
        return;
    }
    queue_.push_back(Pending{event, std::move(subject), std::move(body), *held});
    wake_.notify_one();
}

std::string AlertMailer::compose(AlertEvent event, const std::string& subject, const std::string& body,
                                 std::uint64_t held_back) const {
    auto now = clock_.now();
    std::string to;
    for (const auto& r : settings_.recipients) to += (to.empty() ? "" : ", ") + ("<" + r + ">");
    std::string m = "From: relayguard <" + sender_ + ">\r\nTo: " + to + "\r\nSubject: " + one_line(subject) +
                    "\r\nDate: " + rfc5322_date(now) + "\r\nMessage-ID: <alert." + to_string(event) + "." +
                    std::to_string(now.time_since_epoch().count()) + "." + std::to_string(::getpid()) + "@" + host_ +
                    ">\r\n" +
                    // RFC 3834: machine-made; vacation responders leave it alone.
                    "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
                    body + "time=\"" + rfc5322_date(now) + "\"\r\n";
    if (held_back > 0) {
        m += "\r\n" + std::to_string(held_back) + " more alert(s) were held back since the last one (at most " +
             std::to_string(settings_.max_per_hour) + " an hour about clients, one per client and event every " +
             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(settings_.per_client_interval).count()) +
             " s); the security log has every refusal.\r\n";
    }
    return m;
}

void AlertMailer::run() {
    std::unique_lock lock(mutex_);
    while (true) {
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) {
            // Each alert may take send_timeout: a stop must not wait for them all.
            if (!queue_.empty()) spdlog::warn("alert: stopping; {} alert(s) not sent", queue_.size());
            return;
        }
        Pending alert = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        send(alert);
        lock.lock();
    }
}

void AlertMailer::send(const Pending& alert) {
    auto deadline = SystemClock::monotonic() + send_timeout;
    const std::string& submit = settings_.submit;
    auto colon = submit.rfind(':');
    std::string address = submit.substr(0, colon);
    if (address.size() > 2 && address.front() == '[') address = address.substr(1, address.size() - 2);
    int port = std::stoi(submit.substr(colon + 1));
    auto fail = [&](const std::string& why) {
        spdlog::error("alert: {} could not be handed to {}: {}; dropped", to_string(alert.event), submit, why);
    };
    auto conn = SmtpConnection::open(address, port, deadline, false, TlsOptions{false, "", ""});
    if (!conn) return fail(conn.error());
    auto step = [&](Result<SmtpResponse> r, int want, const char* what) -> bool {
        if (r && r->code == want) return true;
        fail(std::string(what) + ": " + (r ? r->text() : r.error()));
        return false;
    };
    if (!step(conn->greeting(deadline), 220, "greeting")) return;
    if (!step(conn->hello(host_, deadline), 250, "EHLO")) return;
    if (!step(conn->command("MAIL FROM:<" + sender_ + ">", deadline), 250, "MAIL")) return;
    std::size_t accepted = 0;
    for (const auto& r : settings_.recipients) {
        auto reply = conn->command("RCPT TO:<" + r + ">", deadline);
        if (reply && reply->positive()) ++accepted;
        else spdlog::error("alert: recipient <{}> refused by {}: {}", r, submit, reply ? reply->text() : reply.error());
    }
    if (accepted == 0) return fail("no recipient accepted");
    auto data = conn->data(compose(alert.event, alert.subject, alert.body, alert.held_back), deadline);
    if (!data || data->code != 250) return fail("DATA: " + (data ? data->text() : data.error()));
    (void)conn->command("QUIT", deadline);
    spdlog::info("alert: {} sent to {} recipient(s) via {} ({}): {}", to_string(alert.event), accepted, submit,
                 data->text(), alert.subject);
}

}  // namespace relayguard
