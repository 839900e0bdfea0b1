// Delivery status notifications (RFC 3464): the delay warning, the bounce
// and the "relayed" notice, each a multipart/report of three parts: the
// words from the admin's template, the machine-readable
// message/delivery-status, and the original message (or only its headers).
// Reports go out with the null reverse-path and Auto-Submitted, so no one
// answers them and a report that fails is never reported again.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/base/text_codec.h"
#include "delivery/delivery_settings.h"
#include "delivery/queue/queue_file.h"
#include "delivery/reports/report_template.h"

namespace relayguard {

struct ReportRecipient {
    std::string address;     // Final-Recipient
    std::string orcpt;       // ORCPT as given ("rfc822;xtext"), or ""
    std::string status;      // "5.1.1"
    std::string remote_mta;  // the host we spoke to, or ""
    std::string diagnostic;  // the remote server's own reply, or "" when none answered
    std::string reason;      // for the sender to read: that reply, or our own words
};

struct DeliveryReport {
    ReportKind kind = ReportKind::failure;
    std::string reporting_mta;  // this host's name
    std::string queue_id;
    std::string sender;  // of the original message: the report's recipient
    std::string envid;   // xtext as given, or ""
    TimePoint arrival{};
    TimePoint now{};
    TimePoint retry_until{};  // delay warnings: when we give up
    bool full_message = false;  // message/rfc822, else text/rfc822-headers
    std::vector<ReportRecipient> recipients;
};

// The status code a report gives: the enhanced code in `reply`
// ("550 5.1.1 ..."), else one of its class.
std::string enhanced_status(std::string_view reply, bool permanent);

// RFC 3461 xtext ("+2B" for "+"); undecodable text is kept as it is.
std::string xtext_decode(std::string_view text);

// "4h 0m", "2d 3h", "45s": the two largest units.
std::string human_duration(Duration d);

// Every placeholder's value for this report.
std::map<std::string, std::string> report_values(const DeliveryReport& report);

// The whole report as an RFC 5322 message with CRLF line ends. `boundary`
// must not occur in `original`; report_boundary() makes one.
std::string compose_delivery_report(const DeliveryReport& report, const ReportText& text, std::string_view original,
                                    const std::string& boundary);
std::string report_boundary(const std::string& queue_id, std::string_view original);

// The language of a report to `sender` about `original`, "in the sender's
// language": delivery.report_languages by the sender's domain (exact, then
// ".parent" entries for subdomains), else the original's Content-Language
// (its first tag, then that tag's primary subtag) when `has_template` says
// reports_dir has it, else delivery.report_language.
std::string choose_report_language(const DeliverySettings& settings, std::string_view sender,
                                   std::string_view original, const std::function<bool(const std::string&)>& has_template);

// The report as a queue entry: null sender, to the original sender, text in
// choose_report_language's language (with the fallbacks of report_template.h).
QueuedMessage report_message(const DeliverySettings& settings, const DeliveryReport& report, std::string_view original);

// This host's name, for Reporting-MTA and the EHLO greeting.
std::string mail_host_name(const DeliverySettings& settings);

}  // namespace relayguard
