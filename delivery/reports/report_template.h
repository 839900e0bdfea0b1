// The human-readable words of delay warnings and bounces, from UTF-8 text
// files an admin can edit: <reports_dir>/<language>/{failure,delay,relayed}.txt.
// A template is a "Subject:" line, an empty line, then the body, with
// placeholders in braces ({recipients}, {queue_time}, ...). A template that
// is missing or broken never costs a report: the English one is used
// instead, and past that the English text built into the binary.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace relayguard {

enum class ReportKind { failure, delay, relayed };

// "failure", "delay", "relayed": the template's file name without ".txt".
std::string_view report_kind_name(ReportKind kind);

struct ReportText {
    std::string subject;
    std::string body;
    std::string language;  // the one actually used
};

// Every placeholder a template may use; any other name makes it broken.
const std::vector<std::string>& report_placeholders();

// Renders one template's source. Errors name what is wrong: no Subject
// line, an unknown or unclosed placeholder, text that is not UTF-8.
Result<ReportText> render_report_template(std::string_view source, const std::map<std::string, std::string>& values);

// The template for `language`, else English, else the built-in text. Each
// fallback is logged as a warning naming the file and the fault.
ReportText load_report_text(const std::string& reports_dir, const std::string& language, ReportKind kind,
                            const std::map<std::string, std::string>& values);

// The English text compiled in, the last resort.
std::string_view builtin_report_template(ReportKind kind);

}  // namespace relayguard
