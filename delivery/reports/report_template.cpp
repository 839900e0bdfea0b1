// Report templates; see the header.
#include "delivery/reports/report_template.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace relayguard {

namespace {

constexpr std::string_view builtin_failure =
    "Subject: Undelivered mail returned to sender\n"
    "\n"
    "This is the mail system at {reporting_mta}.\n"
    "\n"
    "Your message could not be delivered to one or more recipients.\n"
    "It is attached below. The reason given for each recipient:\n"
    "\n"
    "{recipients}\n"
    "\n"
    "The message arrived at {arrival} and was in the queue for {queue_time}\n"
    "(queue id {queue_id}).\n";

constexpr std::string_view builtin_delay =
    "Subject: Delayed mail (still being retried)\n"
    "\n"
    "This is the mail system at {reporting_mta}.\n"
    "\n"
    "This is a warning only: you do not need to send your message again.\n"
    "It has not yet been delivered to these recipients after {queue_time}:\n"
    "\n"
    "{recipients}\n"
    "\n"
    "Delivery will be retried until {retry_until}; if it has not succeeded\n"
    "by then, you will receive a final notice (queue id {queue_id}).\n";

constexpr std::string_view builtin_relayed =
    "Subject: Delivery status notification (relayed)\n"
    "\n"
    "This is the mail system at {reporting_mta}.\n"
    "\n"
    "Your message was passed on to these recipients' mail systems, which\n"
    "may not send further notifications:\n"
    "\n"
    "{recipients}\n";

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n;  // continuation bytes
        std::uint32_t cp;
        if (c < 0x80) { n = 0; cp = c; }
        else if ((c >> 5) == 0x6) { n = 1; cp = c & 0x1f; }
        else if ((c >> 4) == 0xe) { n = 2; cp = c & 0x0f; }
        else if ((c >> 3) == 0x1e) { n = 3; cp = c & 0x07; }
        else return false;
        if (s.size() - i - 1 < n) return false;
        for (std::size_t k = 1; k <= n; ++k) {
            auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        static constexpr std::uint32_t min_for[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_for[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n + 1;
    }
    return true;
}

}  // namespace

std::string_view report_kind_name(ReportKind kind) {
    switch (kind) {
        case ReportKind::failure: return "failure";
        case ReportKind::delay: return "delay";
        case ReportKind::relayed: return "relayed";
    }
    return "failure";
}

const std::vector<std::string>& report_placeholders() {
    static const std::vector<std::string> names{"recipients", "recipient", "reason",   "queue_time", "queue_id",
                                                "sender",     "arrival",   "retry_until", "reporting_mta"};
    return names;
}

std::string_view builtin_report_template(ReportKind kind) {
    switch (kind) {
        case ReportKind::failure: return builtin_failure;
        case ReportKind::delay: return builtin_delay;
        case ReportKind::relayed: return builtin_relayed;
    }
    return builtin_failure;
}

Result<ReportText> render_report_template(std::string_view source, const std::map<std::string, std::string>& values) {
    using R = Result<ReportText>;
    if (!valid_utf8(source)) return R::failure("not valid UTF-8");
    // Leading comment lines ("#") are the admin's notes.
    while (!source.empty() && source.front() == '#') {
        auto nl = source.find('\n');
        source.remove_prefix(nl == std::string_view::npos ? source.size() : nl + 1);
    }
    auto expand = [&](std::string_view text, std::string& out) -> std::string {
        for (std::size_t i = 0; i < text.size(); ++i) {
            char c = text[i];
            if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
                out += '{';
                ++i;
            } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
                out += '}';
                ++i;
            } else if (c == '{') {
                auto close = text.find('}', i);
                if (close == std::string_view::npos) return "unclosed '{'";
                std::string name(text.substr(i + 1, close - i - 1));
                const auto& known = report_placeholders();
                if (std::find(known.begin(), known.end(), name) == known.end()) return "unknown placeholder {" + name + "}";
                auto v = values.find(name);
                if (v != values.end()) out += v->second;
                i = close;
            } else if (c != '\r') {
                out += c;
            }
        }
        return "";
    };
    auto nl = source.find('\n');
    std::string_view first = source.substr(0, nl);
    if (first.substr(0, 8) != "Subject:" || nl == std::string_view::npos) return R::failure("the first line must be \"Subject: ...\"");
    std::string_view rest = source.substr(nl + 1);
    if (!rest.empty() && rest.front() == '\r') rest.remove_prefix(1);
    if (rest.empty() || rest.front() != '\n') return R::failure("an empty line must follow the Subject line");
    rest.remove_prefix(1);
    ReportText out;
    std::string subject_text(first.substr(8));
    while (!subject_text.empty() && (subject_text.front() == ' ' || subject_text.front() == '\t')) subject_text.erase(0, 1);
    if (auto why = expand(subject_text, out.subject); !why.empty()) return R::failure("Subject: " + why);
    // A subject is one line whatever the values hold.
    std::replace_if(out.subject.begin(), out.subject.end(), [](char ch) { return ch == '\n' || ch == '\r'; }, ' ');
    if (out.subject.empty()) return R::failure("the Subject is empty");
    if (auto why = expand(rest, out.body); !why.empty()) return R::failure(why);
    return out;
}

ReportText load_report_text(const std::string& reports_dir, const std::string& language, ReportKind kind,
                            const std::map<std::string, std::string>& values) {
    std::string file_name = std::string(report_kind_name(kind)) + ".txt";
    for (const std::string& lang : {language, std::string("en")}) {
        std::string path = reports_dir + "/" + lang + "/" + file_name;
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            spdlog::warn("report template {}: cannot be read; using {}", path,
                         lang == "en" ? "the built-in English text" : "English");
            if (lang == "en") break;
            continue;
        }
        std::ostringstream source;
        source << in.rdbuf();
        auto rendered = render_report_template(source.str(), values);
        if (rendered) {
            rendered->language = lang;
            return std::move(*rendered);
        }
        spdlog::warn("report template {}: {}; using {}", path, rendered.error(),
                     lang == "en" ? "the built-in English text" : "English");
        if (lang == "en") break;
    }
    auto builtin = render_report_template(builtin_report_template(kind), values);
    builtin->language = "en";
    return std::move(*builtin);
}

}  // namespace relayguard
