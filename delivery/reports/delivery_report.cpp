// Delivery status notifications; see the header.
#include "delivery/reports/delivery_report.h"

#include <cctype>

#include <unistd.h>

#include <ctime>
#include <random>

#include "common/base/text_codec.h"

namespace relayguard {

namespace {

bool is_ascii(std::string_view s) {
    for (char c : s) {
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    }
    return true;
}

// A header field's value: one line, printable ASCII, well under 998 octets.
std::string header_safe(std::string_view s, std::size_t max = 900) {
    std::string out;
    for (char c : s.substr(0, max)) {
        auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u >= 0x7f) ? ' ' : c;
    }
    return out;
}

// Text from outside (a server's reply, an address) fit for a report's body:
// one line, no control characters, bytes that are not UTF-8 made '?', and
// short, so no line of the report nears SMTP's 998-octet limit.
std::string text_line(std::string_view s, std::size_t max = 500) {
    std::string out;
    std::size_t i = 0;
    while (i < s.size() && out.size() < max) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool ok = n > 0 && i + n <= s.size();
        for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
        if (!ok) {
            out += '?';
            ++i;
        } else if (n == 1) {
            out += (c < 0x20 || c == 0x7f) ? ' ' : static_cast<char>(c);
            ++i;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

// RFC 2047 encoded words for a UTF-8 subject, never splitting a character.
std::string encode_subject(std::string_view s) {
    if (is_ascii(s)) return header_safe(s);
    std::string out;
    std::size_t i = 0;
    while (i < s.size()) {
        std::size_t end = std::min(s.size(), i + 45);
        while (end > i + 1 && end < s.size() && (static_cast<unsigned char>(s[end]) & 0xc0) == 0x80) --end;
        if (!out.empty()) out += "\r\n ";
        out += "=?UTF-8?B?" + base64_encode(s.substr(i, end - i)) + "?=";
        i = end;
    }
    return out;
}

// Quoted-printable (RFC 2045 6.7) of text with LF or CRLF line ends.
std::string quoted_printable(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    std::size_t column = 0;
    auto emit = [&](std::string_view piece) {
        if (column + piece.size() > 75) {
            out += "=\r\n";
            column = 0;
        }
        out += piece;
        column += piece.size();
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
        if (c == '\n') {
            // Trailing white space would be lost in transport: encode it.
            if (!out.empty() && (out.back() == ' ' || out.back() == '\t')) {
                char last = out.back();
                out.pop_back();
                out += '=';
                out += hex[last >> 4];
                out += hex[last & 15];
            }
            out += "\r\n";
            column = 0;
        } else if ((c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t') {
            emit(std::string_view(reinterpret_cast<const char*>(&text[i]), 1));
        } else {
            char enc[3] = {'=', hex[c >> 4], hex[c & 15]};
            emit(std::string_view(enc, 3));
        }
    }
    return out;
}

// Text with every line end CRLF.
std::string crlf(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
        out += text[i];
    }
    return out;
}

std::string_view action_of(ReportKind kind) {
    switch (kind) {
        case ReportKind::failure: return "failed";
        case ReportKind::delay: return "delayed";
        case ReportKind::relayed: return "relayed";
    }
    return "failed";
}

}  // namespace

std::string enhanced_status(std::string_view reply, bool permanent) {
    // "550 5.1.1 text" or "550-5.1.1 text": the code after the reply code.
    auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    std::size_t start = reply.size() >= 4 && is_digit(reply[0]) ? 4 : 0;
    std::string_view rest = reply.substr(start);
    if (rest.size() >= 5 && (rest[0] == '2' || rest[0] == '4' || rest[0] == '5') && rest[1] == '.') {
        std::size_t i = 2, digits = 0;
        while (i < rest.size() && is_digit(rest[i]) && digits < 3) ++i, ++digits;
        if (digits > 0 && i < rest.size() && rest[i] == '.') {
            std::size_t j = i + 1, d2 = 0;
            while (j < rest.size() && is_digit(rest[j]) && d2 < 3) ++j, ++d2;
            if (d2 > 0 && (j == rest.size() || rest[j] == ' ')) {
                std::string code(rest.substr(0, j));
                // A report's class follows what happened, not the words.
                code[0] = permanent ? '5' : '4';
                return code;
            }
        }
    }
    return permanent ? "5.0.0" : "4.0.0";
}

std::string xtext_decode(std::string_view text) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '+' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
            out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

std::string human_duration(Duration d) {
    long long s = std::max<long long>(0, std::chrono::duration_cast<std::chrono::seconds>(d).count());
    const std::pair<long long, const char*> units[] = {{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}};
    for (std::size_t u = 0; u < 4; ++u) {
        if (s >= units[u].first || u == 3) {
            std::string out = std::to_string(s / units[u].first) + units[u].second;
            if (u < 3) out += " " + std::to_string(s % units[u].first / units[u + 1].first) + units[u + 1].second;
            return out;
        }
    }
    return "0s";
}

std::map<std::string, std::string> report_values(const DeliveryReport& r) {
    std::map<std::string, std::string> v;
    std::string list;
    for (const auto& rc : r.recipients) {
        list += (list.empty() ? "" : "\n") + text_line("<" + rc.address + ">: " + rc.reason);
    }
    v["recipients"] = list;
    v["recipient"] = r.recipients.empty() ? "" : text_line(r.recipients.front().address);
    v["reason"] = r.recipients.empty() ? "" : text_line(r.recipients.front().reason);
    v["queue_time"] = human_duration(r.now - r.arrival);
    v["queue_id"] = r.queue_id;
    v["sender"] = text_line(r.sender);
    v["arrival"] = rfc5322_date(r.arrival);
    v["retry_until"] = rfc5322_date(r.retry_until);
    v["reporting_mta"] = r.reporting_mta;
    return v;
}

std::string report_boundary(const std::string& queue_id, std::string_view original) {
    std::mt19937 random{std::random_device{}()};
    while (true) {
        std::string b = "=_relayguard_" + queue_id + "_" + std::to_string(random() % 1000000);
        if (original.find(b) == std::string_view::npos) return b;
    }
}

std::string compose_delivery_report(const DeliveryReport& r, const ReportText& text, std::string_view original,
                                    const std::string& boundary) {
    std::string m;
    m += "From: Mail Delivery System <MAILER-DAEMON@" + r.reporting_mta + ">\r\n";
    m += "To: <" + header_safe(r.sender) + ">\r\n";
    m += "Subject: " + encode_subject(text.subject) + "\r\n";
    m += "Date: " + rfc5322_date(r.now) + "\r\n";
    m += "Message-ID: <" + r.queue_id + "." + std::string(report_kind_name(r.kind)) + "." +
         std::to_string(r.now.time_since_epoch().count()) + "@" + r.reporting_mta + ">\r\n";
    // RFC 3834: an automatic answer, which no one should answer again.
    m += "Auto-Submitted: auto-replied\r\n";
    m += "MIME-Version: 1.0\r\n";
    m += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
    m += "Content-Language: " + header_safe(text.language) + "\r\n";
    m += "\r\nThis is a MIME-encapsulated delivery status notification.\r\n\r\n";

    // 1. The admin's words.
    m += "--" + boundary + "\r\n";
    m += "Content-Type: text/plain; charset=utf-8\r\n";
    m += "Content-Description: Notification\r\n";
    bool short_lines = true;
    for (std::size_t start = 0; start < text.body.size();) {
        auto nl = text.body.find('\n', start);
        if ((nl == std::string::npos ? text.body.size() : nl) - start > 900) short_lines = false;
        start = nl == std::string::npos ? text.body.size() : nl + 1;
    }
    if (is_ascii(text.body) && short_lines) {
        m += "Content-Transfer-Encoding: 7bit\r\n\r\n" + crlf(text.body);
    } else {
        m += "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + quoted_printable(text.body);
    }
    if (m.size() < 2 || m.compare(m.size() - 2, 2, "\r\n") != 0) m += "\r\n";

    // 2. The machine's.
    m += "\r\n--" + boundary + "\r\n";
    m += "Content-Type: message/delivery-status\r\nContent-Description: Delivery report\r\n\r\n";
    // RFC 3464 2.2: Original-Envelope-Id first, extension fields last.
    if (!r.envid.empty()) m += "Original-Envelope-Id: " + header_safe(xtext_decode(r.envid)) + "\r\n";
    m += "Reporting-MTA: dns; " + r.reporting_mta + "\r\n";
    m += "Arrival-Date: " + rfc5322_date(r.arrival) + "\r\n";
    m += "X-Relayguard-Queue-ID: " + r.queue_id + "\r\n";
    for (const auto& rc : r.recipients) {
        m += "\r\n";
        if (auto semi = rc.orcpt.find(';'); semi != std::string::npos) {
            m += "Original-Recipient: " + header_safe(rc.orcpt.substr(0, semi)) + "; " +
                 header_safe(xtext_decode(rc.orcpt.substr(semi + 1))) + "\r\n";
        }
        m += "Final-Recipient: rfc822; " + header_safe(rc.address) + "\r\n";
        m += "Action: " + std::string(action_of(r.kind)) + "\r\n";
        m += "Status: " + rc.status + "\r\n";
        if (!rc.remote_mta.empty()) m += "Remote-MTA: dns; " + header_safe(rc.remote_mta) + "\r\n";
        // The remote server's own words as it said them; ours under an X- type.
        if (!rc.diagnostic.empty()) m += "Diagnostic-Code: smtp; " + header_safe(rc.diagnostic) + "\r\n";
        else if (!rc.reason.empty()) m += "Diagnostic-Code: X-Relayguard; " + header_safe(rc.reason) + "\r\n";
        m += "Last-Attempt-Date: " + rfc5322_date(r.now) + "\r\n";
        if (r.kind == ReportKind::delay) m += "Will-Retry-Until: " + rfc5322_date(r.retry_until) + "\r\n";
    }

    // 3. The message, or its headers.
    m += "\r\n--" + boundary + "\r\n";
    std::string_view body = original;
    if (r.full_message) {
        m += "Content-Type: message/rfc822\r\nContent-Description: Undelivered message\r\n\r\n";
    } else {
        auto end = original.find("\r\n\r\n");
        body = original.substr(0, end == std::string_view::npos ? original.size() : end + 2);
        m += "Content-Type: text/rfc822-headers\r\nContent-Description: Message headers\r\n\r\n";
    }
    m += body;
    if (body.size() < 2 || body.substr(body.size() - 2) != "\r\n") m += "\r\n";
    m += "\r\n--" + boundary + "--\r\n";
    return m;
}

std::string mail_host_name(const DeliverySettings& s) {
    if (!s.helo_name.empty()) return s.helo_name;
    char h[256] = {};
    ::gethostname(h, sizeof h - 1);
    return h;
}

namespace {

// The unfolded value of the first `name` header in the message's header
// section, or "".
std::string header_value(std::string_view message, std::string_view name) {
    std::string wanted = ascii_lower(name) + ":";
    std::size_t pos = 0;
    while (pos < message.size()) {
        std::size_t eol = message.find('\n', pos);
        std::string_view line = message.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;  // the end of the headers
        pos = eol == std::string_view::npos ? message.size() : eol + 1;
        if (ascii_lower(line.substr(0, wanted.size())) != wanted) continue;
        std::string value(line.substr(wanted.size()));
        // Continuation lines belong to it.
        while (pos < message.size() && (message[pos] == ' ' || message[pos] == '\t')) {
            std::size_t next = message.find('\n', pos);
            std::string_view more = message.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos);
            if (!more.empty() && more.back() == '\r') more.remove_suffix(1);
            value += more;
            pos = next == std::string_view::npos ? message.size() : next + 1;
        }
        return value;
    }
    return "";
}

// A tag safe to use as a directory name: letters, digits and '-' only (the
// header comes from whoever sent the message).
bool plain_language_tag(const std::string& tag) {
    return !tag.empty() && tag.size() <= 35 &&
           tag.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
}

}  // namespace

std::string choose_report_language(const DeliverySettings& s, std::string_view sender, std::string_view original,
                                   const std::function<bool(const std::string&)>& has_template) {
    auto at = sender.rfind('@');
    if (at != std::string_view::npos && !s.report_languages.empty()) {
        std::string domain = ascii_lower(sender.substr(at + 1));
        if (auto it = s.report_languages.find(domain); it != s.report_languages.end()) return it->second;
        for (auto dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1)) {
            if (auto it = s.report_languages.find(domain.substr(dot)); it != s.report_languages.end()) return it->second;
        }
    }
    // "de-DE, en": the first is the main one (RFC 3282).
    std::string first = ascii_lower(header_value(original, "Content-Language"));
    first = first.substr(0, first.find(','));
    auto b = first.find_first_not_of(" \t");
    auto e = first.find_last_not_of(" \t");
    first = b == std::string::npos ? "" : first.substr(b, e - b + 1);
    if (plain_language_tag(first)) {
        for (const std::string& tag : {first, first.substr(0, first.find('-'))}) {
            if (has_template(tag)) return tag;
        }
    }
    return s.report_language;
}

QueuedMessage report_message(const DeliverySettings& s, const DeliveryReport& report, std::string_view original) {
    std::string file = "/" + std::string(report_kind_name(report.kind)) + ".txt";
    std::string language = choose_report_language(s, report.sender, original, [&](const std::string& tag) {
        return ::access((s.reports_dir + "/" + tag + file).c_str(), R_OK) == 0;
    });
    ReportText text = load_report_text(s.reports_dir, language, report.kind, report_values(report));
    QueuedMessage m;
    m.id = new_queue_id(report.now);
    m.arrival = report.now;
    m.sender = "";  // the null reverse-path: a report is never reported on
    m.recipients.push_back(QueuedRecipient{report.sender, RecipientState::pending, 0, "", ""});
    m.content = compose_delivery_report(report, text, original, report_boundary(report.queue_id, original));
    return m;
}

}  // namespace relayguard
