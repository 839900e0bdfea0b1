// Delay warnings and bounces without a network: the templates (placeholders,
// faults, the English fallback), the RFC 3464 report's fields, the DSN
// parameters a queue file keeps, and the POP3 APOP digest.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "delivery/reports/delivery_report.h"
#include "delivery/pop3_client.h"
#include "delivery/queue/queue.h"
#include "temp_dir.h"

using namespace relayguard;
using namespace std::chrono_literals;

namespace {

using test::TempDir;

void write_file(const TempDir& d, const std::string& name, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(d.path + "/" + name).parent_path());
    std::ofstream(d.path + "/" + name, std::ios::binary) << text;
}

TimePoint t0() { return TimePoint(Duration(1'700'000'000'000)); }

DeliveryReport failure_report() {
    DeliveryReport r;
    r.kind = ReportKind::failure;
    r.reporting_mta = "relay.example.org";
    r.queue_id = "q1";
    r.sender = "alice@example.org";
    r.arrival = t0();
    r.now = t0() + 26h;
    r.retry_until = t0() + 120h;
    r.recipients.push_back({"bob@example.net", "rfc822;Bob+2B1@example.net", "5.1.1", "mx.example.net",
                            "550 5.1.1 <bob@example.net>: Recipient address rejected",
                            "550 5.1.1 <bob@example.net>: Recipient address rejected"});
    return r;
}

}  // namespace

TEST_CASE("a template fills its placeholders and keeps literal braces", "[report]") {
    auto t = render_report_template("# a note for the admin\nSubject: Failed: {recipient}\n\n"
                                    "{{literal}} after {queue_time}: {recipients}\n",
                                    report_values(failure_report()));
    REQUIRE(t);
    REQUIRE(t->subject == "Failed: bob@example.net");
    REQUIRE(t->body ==
            "{literal} after 1d 2h: <bob@example.net>: 550 5.1.1 <bob@example.net>: Recipient address rejected\n");
}

TEST_CASE("a broken template is refused with the reason", "[report]") {
    auto values = report_values(failure_report());
    REQUIRE(render_report_template("Subject: x\n\n{no_such_thing}\n", values).error() == "unknown placeholder {no_such_thing}");
    REQUIRE(render_report_template("Subject: x\n\n{recipient\n", values).error() == "unclosed '{'");
    REQUIRE_FALSE(render_report_template("Hello\n\nbody\n", values));
    REQUIRE_FALSE(render_report_template("Subject: x\nbody\n", values));
    REQUIRE(render_report_template("Subject: x\n\n\xc3\x28\n", values).error() == "not valid UTF-8");
    // The built-in texts are themselves valid templates.
    for (auto kind : {ReportKind::failure, ReportKind::delay, ReportKind::relayed}) {
        REQUIRE(render_report_template(builtin_report_template(kind), values));
    }
}

TEST_CASE("a missing or broken language falls back to English, then to the built-in text", "[report]") {
    TempDir d;
    auto values = report_values(failure_report());
    write_file(d, "en/failure.txt", "Subject: English {recipient}\n\nen\n");
    write_file(d, "de/failure.txt", "Subject: Unzustellbar: {recipient}\n\nGr\xc3\xbc\xc3\x9f" "e\n");
    write_file(d, "cs/failure.txt", "Subject: x\n\n{broken\n");
    REQUIRE(load_report_text(d.path, "de", ReportKind::failure, values).subject == "Unzustellbar: bob@example.net");
    REQUIRE(load_report_text(d.path, "de", ReportKind::failure, values).language == "de");
    auto broken = load_report_text(d.path, "cs", ReportKind::failure, values);
    REQUIRE(broken.subject == "English bob@example.net");
    REQUIRE(broken.language == "en");
    REQUIRE(load_report_text(d.path, "xx", ReportKind::failure, values).language == "en");
    // No English file either: the compiled-in words, never no report.
    auto builtin = load_report_text(d.path, "de", ReportKind::delay, values);
    REQUIRE(builtin.subject == "Delayed mail (still being retried)");
}

TEST_CASE("the report carries RFC 3464's fields and the original headers", "[report]") {
    auto r = failure_report();
    r.envid = "QQ+2B1";
    std::string original = "Subject: hello\r\nFrom: alice@example.org\r\n\r\nsecret body\r\n";
    ReportText text{"Undelivered: \xc3\xbc", "Gr\xc3\xbc\xc3\x9f" "e\n", "de"};
    std::string m = compose_delivery_report(r, text, original, "BOUNDARY");
    auto has = [&](const std::string& s) { return m.find(s) != std::string::npos; };
    REQUIRE(has("To: <alice@example.org>\r\n"));
    REQUIRE(has("Auto-Submitted: auto-replied\r\n"));
    REQUIRE(has("Subject: =?UTF-8?B?VW5kZWxpdmVyZWQ6IMO8?=\r\n"));
    REQUIRE(has("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"BOUNDARY\""));
    REQUIRE(has("Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n"));
    REQUIRE(has("Reporting-MTA: dns; relay.example.org\r\n"));
    REQUIRE(has("Original-Envelope-Id: QQ+1\r\n"));
    REQUIRE(has("Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
    REQUIRE(has("Original-Recipient: rfc822; Bob+1@example.net\r\n"));
    REQUIRE(has("Final-Recipient: rfc822; bob@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                "Remote-MTA: dns; mx.example.net\r\n"
                "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected\r\n"));
    // Headers only unless the whole message was asked for.
    REQUIRE(has("Content-Type: text/rfc822-headers"));
    REQUIRE_FALSE(has("secret body"));
    r.full_message = true;
    REQUIRE(compose_delivery_report(r, text, original, "B").find("secret body") != std::string::npos);
    // Our own words, when no server answered, go under an X- type.
    r.recipients[0].remote_mta = "";
    r.recipients[0].diagnostic = "";
    r.recipients[0].reason = "connect to x: Connection refused";
    REQUIRE(compose_delivery_report(r, text, original, "B").find("Diagnostic-Code: X-Relayguard; connect to x") !=
            std::string::npos);
}

TEST_CASE("status codes follow what happened; xtext and durations read well", "[report]") {
    REQUIRE(enhanced_status("550 5.1.1 user unknown", true) == "5.1.1");
    REQUIRE(enhanced_status("451 4.3.0 try later", false) == "4.3.0");
    REQUIRE(enhanced_status("550 no such user", true) == "5.0.0");
    REQUIRE(enhanced_status("connection refused", false) == "4.0.0");
    REQUIRE(enhanced_status("452 4.2.2 mailbox full", true) == "5.2.2");
    REQUIRE(xtext_decode("a+2Bb+3Dc") == "a+b=c");
    REQUIRE(xtext_decode("broken+2") == "broken+2");
    REQUIRE(human_duration(45s) == "45s");
    REQUIRE(human_duration(4h) == "4h 0m");
    REQUIRE(human_duration(51h + 5min) == "2d 3h");
}

TEST_CASE("a queue file keeps NOTIFY, ORCPT, RET, ENVID and the warning mark", "[report][queue]") {
    TempDir d;
    auto q = Queue::open(d.path, t0());
    REQUIRE(q);
    QueuedMessage m;
    m.sender = "a@example.org";
    m.ret = "HDRS";
    m.envid = "ID+2B1";
    m.recipients.push_back({"x@example.net", RecipientState::pending, 0, "FAILURE,DELAY", "rfc822;x@example.net"});
    m.recipients.push_back({"y@example.net", RecipientState::pending, 0, "NEVER", ""});
    m.recipients.push_back({"z@example.net", RecipientState::pending, 0, "", ""});
    m.content = "Subject: t\r\n\r\nbody\r\n";
    auto id = (*q)->enqueue(m, t0());
    REQUIRE(id);
    std::string path = d.path + "/active/" + *id;
    auto back = read_queue_file(path, true);
    REQUIRE(back);
    REQUIRE(back->ret == "HDRS");
    REQUIRE(back->envid == "ID+2B1");
    REQUIRE_FALSE(back->warned);
    REQUIRE(back->recipients[0].notify == "FAILURE,DELAY");
    REQUIRE(back->recipients[0].orcpt == "rfc822;x@example.net");
    REQUIRE(notify_wants(back->recipients[0], "DELAY"));
    REQUIRE_FALSE(notify_wants(back->recipients[0], "SUCCESS"));
    REQUIRE_FALSE(notify_wants(back->recipients[1], "FAILURE"));
    REQUIRE(notify_wants(back->recipients[2], "FAILURE"));
    REQUIRE_FALSE(notify_wants(back->recipients[2], "SUCCESS"));
    REQUIRE(mark_warned(path, *back));
    REQUIRE(mark_recipient(path, back->recipients[2], RecipientState::delivered));
    auto again = read_queue_file(path, true);
    REQUIRE(again);
    REQUIRE(again->warned);
    REQUIRE(again->recipients[2].state == RecipientState::delivered);
    REQUIRE(again->recipients[2].address == "z@example.net");
}

TEST_CASE("APOP digests the greeting's timestamp and the secret", "[pop3]") {
    // RFC 1939 7's example exchange; the digest as Python's hashlib.md5 gives
    // it for "<1896.697170952@dbc.mtview.ca.us>tanstaafl".
    std::string ts = apop_timestamp("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>");
    REQUIRE(ts == "<1896.697170952@dbc.mtview.ca.us>");
    REQUIRE(apop_digest(ts, "tanstaafl") == "a6f0dd348916c9ee9539661f94c75203");
    REQUIRE(apop_timestamp("+OK Dovecot ready.") == "");
}

TEST_CASE("every shipped template renders without a fallback", "[report]") {
    auto values = report_values(failure_report());
    for (const char* lang : {"en", "de", "cs"}) {
        for (auto kind : {ReportKind::failure, ReportKind::delay, ReportKind::relayed}) {
            std::string path = std::string(RELAYGUARD_SOURCE_DIR) + "/reports/" + lang + "/" +
                               std::string(report_kind_name(kind)) + ".txt";
            std::ifstream in(path, std::ios::binary);
            REQUIRE(in);
            std::string source((std::istreambuf_iterator<char>(in)), {});
            INFO(path);
            auto t = render_report_template(source, values);
            REQUIRE(t);
            REQUIRE(t->body.find("bob@example.net") != std::string::npos);
        }
    }
}

TEST_CASE("hostile replies cannot break a report: long, 8-bit, control characters", "[report]") {
    auto r = failure_report();
    r.recipients[0].reason = std::string(70000, 'x') + "\r\nInjected: yes\xff\xfe";
    r.recipients[0].diagnostic = r.recipients[0].reason;
    auto values = report_values(r);
    REQUIRE(values["reason"].find('\n') == std::string::npos);
    REQUIRE(values["reason"].find('\r') == std::string::npos);
    auto text = render_report_template("Subject: {reason}\n\n{recipients}\n", values);
    REQUIRE(text);
    std::string m = compose_delivery_report(r, *text, "Subject: x\r\n\r\nbody\r\n", "B");
    std::size_t longest = 0;
    for (std::size_t start = 0; start < m.size();) {
        auto nl = m.find("\r\n", start);
        longest = std::max(longest, (nl == std::string::npos ? m.size() : nl) - start);
        start = nl == std::string::npos ? m.size() : nl + 2;
    }
    REQUIRE(longest <= 998);
    REQUIRE(m.find("\r\nInjected: yes") == std::string::npos);
}

namespace {
// The language a sender would read the bounce in: its Content-Language header.
std::string bounce_language(const DeliverySettings& s, const std::string& sender, const std::string& original) {
    auto r = failure_report();
    r.sender = sender;
    std::string m = report_message(s, r, original).content;
    auto at = m.find("Content-Language: ");
    if (at == std::string::npos) return "";
    return m.substr(at + 18, m.find("\r\n", at) - at - 18);
}
DeliverySettings shipped_reports() {
    DeliverySettings s;
    s.reports_dir = std::string(RELAYGUARD_SOURCE_DIR) + "/reports";
    s.report_language = "en";
    return s;
}
}  // namespace

TEST_CASE("a bounce is in the language of the original message when a template for it exists", "[report]") {
    auto s = shipped_reports();
    std::string body = "\r\nHallo\r\n";
    REQUIRE(bounce_language(s, "a@example.org", "Subject: x\r\nContent-Language: de\r\n" + body) == "de");
    // The first of several tags, down to its primary subtag; any case.
    REQUIRE(bounce_language(s, "a@example.org", "content-language: CS-cz, en\r\n" + body) == "cs");
    // Folded onto the next line.
    REQUIRE(bounce_language(s, "a@example.org", "Content-Language:\r\n de-AT\r\n" + body) == "de");
    // No template for it, none given, or only in the body: report_language.
    REQUIRE(bounce_language(s, "a@example.org", "Content-Language: fr\r\n" + body) == "en");
    REQUIRE(bounce_language(s, "a@example.org", "Subject: x\r\n" + body) == "en");
    REQUIRE(bounce_language(s, "a@example.org", "Subject: x\r\n\r\nContent-Language: de\r\n") == "en");
    // The header is the sender's to write: never a path.
    REQUIRE(bounce_language(s, "a@example.org", "Content-Language: ../de\r\n" + body) == "en");
    s.report_language = "cs";
    REQUIRE(bounce_language(s, "a@example.org", "Content-Language: fr\r\n" + body) == "cs");
}

TEST_CASE("delivery.report_languages picks the language by the sender's domain, before Content-Language",
          "[report]") {
    auto s = shipped_reports();
    s.report_languages = {{"example.de", "de"}, {".example.cz", "cs"}};
    std::string english = "Content-Language: en\r\n\r\nbody\r\n";
    REQUIRE(bounce_language(s, "alice@Example.DE", english) == "de");
    REQUIRE(bounce_language(s, "bob@mail.example.cz", english) == "cs");
    REQUIRE(bounce_language(s, "bob@a.b.example.cz", "\r\n") == "cs");
    // ".example.cz" is its subdomains only; other domains are not mapped.
    REQUIRE(bounce_language(s, "bob@example.cz", "\r\n") == "en");
    REQUIRE(bounce_language(s, "carol@sub.example.de", "\r\n") == "en");
    REQUIRE(choose_report_language(s, "x@example.de", "", [](const std::string&) { return false; }) == "de");
    REQUIRE(choose_report_language(s, "", "Content-Language: cs\r\n\r\n", [](const std::string& t) { return t == "cs"; }) ==
            "cs");
}
