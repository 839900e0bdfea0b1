// Queue commands; see the header.
#include "delivery/queue/queue_admin.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "common/base/system_clock.h"
#include "common/base/text_codec.h"
#include "delivery/destination_state.h"
#include "delivery/reports/delivery_report.h"
#include "delivery/queue/queue.h"

namespace relayguard {

namespace {

std::string iso(TimePoint t) { return format_time(t, "%Y-%m-%d %H:%M:%S", TimeZone::local); }

QueueAnswer error_answer(const std::string& why) {
    QueueAnswer a;
    a.ok = false;
    a.error = why;
    return a;
}

// What an admin reads when the id names no message (the file is gone, or
// never was), rather than the errno's words.
QueueAnswer no_such_message(const std::string& id) { return error_answer("no message " + id + " in the queue"); }

// Not there at all (a permission problem is not "no such message").
bool gone(const std::string& path) { return ::access(path.c_str(), F_OK) != 0 && errno == ENOENT; }

const char* state_word(RecipientState state) {
    switch (state) {
    case RecipientState::delivered: return "delivered";
    case RecipientState::failed: return "failed";
    case RecipientState::pending: break;
    }
    return "to go";
}

// A queue id names a file in active/: no path tricks.
bool plain_id(const std::string& id) {
    return !id.empty() && id.find('/') == std::string::npos && id != "." && id != "..";
}

// `queue list`: each message, its size, age, next attempt and recipients to go.
QueueAnswer queue_list(const DeliverySettings& s, const DeferralReasons& reasons) {
    std::string active = s.queue_dir + "/active/";
    Queue q(s.queue_dir);
    QueueAnswer a;
    auto entries = q.scan();
    a.data["messages"] = nlohmann::json::array();
    for (const auto& e : entries) {
        auto m = read_queue_file(active + e.id, false);
        if (!m) {
            a.text += e.id + "  (unreadable: " + m.error() + ")\n";
            continue;
        }
        std::size_t pending = 0;
        nlohmann::json to = nlohmann::json::array();
        for (const auto& r : m->recipients) {
            pending += r.state == RecipientState::pending;
            if (r.state == RecipientState::pending) to.push_back(r.address);
        }
        std::string reason = reasons ? reasons(e.id) : "";
        a.data["messages"].push_back({{"id", e.id}, {"size", m->size}, {"arrival", iso(m->arrival)},
                                      {"next_attempt", iso(e.next_attempt)}, {"sender", m->sender},
                                      {"pending", to}, {"recipients", m->recipients.size()}, {"reason", reason}});
        a.text += e.id + "  " + std::to_string(m->size) + " bytes  arrived " + iso(m->arrival) + "  next " +
                  iso(e.next_attempt) + "  from <" + m->sender + ">  " + std::to_string(pending) + "/" +
                  std::to_string(m->recipients.size()) + " to go\n";
        // As mailq shows it: the last attempt's problem, indented under the message.
        if (!reason.empty()) a.text += "    (" + reason + ")\n";
    }
    a.text += std::to_string(entries.size()) + " message(s) in " + s.queue_dir + "\n";
    return a;
}

// `queue show ID`: the envelope, each recipient's state in words, the
// last attempt's problem, and the headers as text.
QueueAnswer queue_show(const DeliverySettings& s, const std::string& id, const DeferralReasons& reasons) {
    std::string path = s.queue_dir + "/active/" + id;
    QueueAnswer a;
    auto m = read_queue_file(path, true);
    if (!m) return gone(path) ? no_such_message(id) : error_answer(id + ": " + m.error());
    nlohmann::json rcpts = nlohmann::json::array();
    a.text = "id: " + m->id + "\narrival: " + iso(m->arrival) + "\nfrom: <" + m->sender + ">\n";
    for (const auto& r : m->recipients) {
        a.text += "to: <" + r.address + ">  " + state_word(r.state) + "\n";
        rcpts.push_back({{"address", r.address}, {"state", state_word(r.state)}});
    }
    std::string reason = reasons ? reasons(id) : "";
    if (!reason.empty()) a.text += "last attempt: " + reason + "\n";
    // Headers came from outside: no terminal escapes reach the admin's
    // screen. The line ends are the queue file's CRLF, shown as lines.
    std::string raw = m->content.substr(0, m->content.find("\r\n\r\n"));
    std::string headers;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        auto u = static_cast<unsigned char>(c);
        if (c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') continue;
        headers += (u < 0x20 && c != '\n' && c != '\t') || u == 0x7f ? '?' : c;
    }
    a.text += "size: " + std::to_string(m->size) + "\n\n" + headers + "\n";
    a.data = {{"id", m->id}, {"arrival", iso(m->arrival)}, {"sender", m->sender}, {"recipients", rcpts},
              {"size", m->size}, {"headers", headers}, {"warned", m->warned}, {"reason", reason}};
    return a;
}

// `queue flush [ID]`: every message (or one) due now, and the rest of the
// destinations they wait for ended, as Postfix's `postqueue -f` does:
// otherwise a message "due now" would still wait out its smart host's rest.
QueueAnswer queue_flush(const DeliverySettings& s, const std::vector<std::string>& args,
                        DestinationState& destinations) {
    std::string active = s.queue_dir + "/active/";
    Queue q(s.queue_dir);
    QueueAnswer a;
    std::size_t n = 0;
    std::set<std::string> waited_for;
    for (const auto& e : q.scan()) {
        if (args.size() == 2 && e.id != args[1]) continue;
        timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
        if (::utimensat(AT_FDCWD, (active + e.id).c_str(), times, 0) != 0) continue;
        ++n;
        if (auto m = read_queue_file(active + e.id, false)) {
            for (const auto& r : m->recipients) {
                if (r.state == RecipientState::pending) waited_for.insert(destination_key(s, recipient_domain(r.address)));
            }
        }
    }
    if (args.size() == 2 && n == 0) return no_such_message(args[1]);
    SystemClock clock;
    nlohmann::json ended = nlohmann::json::array();
    a.text = std::to_string(n) + " message(s) due now\n";
    for (const auto& d : waited_for) {
        auto until = destinations.end_rest(d, clock.now());
        if (!until) continue;
        ended.push_back(d);
        a.text += d + ": its rest after failures (until " + iso(*until) + ") is ended; tried again now\n";
        spdlog::info("queue flush: the rest of destination {} is ended by the administrator", d);
    }
    a.data = {{"due_now", n}, {"rests_ended", ended}};
    return a;
}

// `queue bounce ID`: gives up now: every recipient still to go fails, as
// when the lifetime ends, and the sender gets the bounce (unless NOTIFY said
// otherwise, or the message is itself a report).
QueueAnswer queue_bounce(const DeliverySettings& s, const std::string& id) {
    std::string active = s.queue_dir + "/active/";
    Queue q(s.queue_dir);
    QueueAnswer a;
    auto m = read_queue_file(active + id, true);
    if (!m) return gone(active + id) ? no_such_message(id) : error_answer(id + ": " + m.error());
    SystemClock clock;
    DeliveryReport report;
    report.reporting_mta = mail_host_name(s);
    report.queue_id = m->id;
    report.sender = m->sender;
    report.envid = m->envid;
    report.arrival = m->arrival;
    report.now = clock.now();
    report.full_message = m->ret != "HDRS" && m->size <= s.bounce_size_limit;
    std::vector<const QueuedRecipient*> bounced;
    for (const auto& r : m->recipients) {
        if (r.state != RecipientState::pending) continue;
        bounced.push_back(&r);
        if (notify_wants(r, "FAILURE")) {
            report.recipients.push_back({r.address, r.orcpt, "5.0.0", "", "", "returned to the sender by the administrator"});
        }
    }
    if (!m->sender.empty() && !report.recipients.empty()) {
        auto queued = q.enqueue(report_message(s, report, m->content), report.now);
        if (!queued) return error_answer(id + ": could not queue the bounce: " + queued.error());
        a.text += id + ": bounce " + *queued + " queued to <" + m->sender + ">\n";
        spdlog::info("{}: sender notified: failure report {} to <{}> ({} recipient(s), by the administrator)", id,
                     *queued, m->sender, report.recipients.size());
        a.data["bounce"] = *queued;
    }
    for (const auto* r : bounced) {
        if (!mark_recipient(active + id, *r, RecipientState::failed)) {
            return error_answer(id + ": could not record the bounce");
        }
        a.text += id + ": to=<" + r->address + "> status=bounced (by the administrator)\n";
        spdlog::info("{}: to=<{}> status=bounced (returned by the administrator: queue bounce)", id, r->address);
    }
    ::unlink((active + id).c_str());
    sync_directory(s.queue_dir + "/active");
    spdlog::info("{}: removed (queue bounce)", id);
    a.text += id + ": " + std::to_string(bounced.size()) + " recipient(s) bounced, removed from the queue\n";
    a.data["bounced"] = bounced.size();
    return a;
}

// `queue delete ID`: the message is gone, no one is told.
QueueAnswer queue_delete(const DeliverySettings& s, const std::string& id) {
    std::string active = s.queue_dir + "/active/";
    QueueAnswer a;
    if (::unlink((active + id).c_str()) != 0) {
        return errno == ENOENT ? no_such_message(id) : error_answer(id + ": " + std::strerror(errno));
    }
    sync_directory(s.queue_dir + "/active");
    spdlog::info("{}: removed (queue delete by the administrator; no one is told)", id);
    a.text = id + " deleted\n";
    a.data = {{"deleted", id}};
    return a;
}

}  // namespace

QueueAnswer queue_request(const DeliverySettings& s, const std::vector<std::string>& args,
                          DestinationState& destinations, const DeferralReasons& reasons) {
    if (args.size() >= 2 && !plain_id(args[1])) return error_answer("'" + args[1] + "' is not a queue id");
    if (args.size() == 1 && args[0] == "list") return queue_list(s, reasons);
    if (args.size() == 2 && args[0] == "show") return queue_show(s, args[1], reasons);
    if ((args.size() == 1 || args.size() == 2) && args[0] == "flush") return queue_flush(s, args, destinations);
    if (args.size() == 2 && args[0] == "bounce") return queue_bounce(s, args[1]);
    if (args.size() == 2 && args[0] == "delete") return queue_delete(s, args[1]);
    QueueAnswer u = error_answer("usage: queue list | show ID | flush [ID] | delete ID | bounce ID");
    u.usage = true;
    return u;
}

}  // namespace relayguard
