// libFuzzer target: a report template an admin wrote, and a remote reply a
// server sent, rendered and composed into a delivery report; the result
// must never hold a line over SMTP's 998 octets.
#include <cstdlib>
#include <string>

#include "delivery/reports/delivery_report.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string_view all(reinterpret_cast<const char*>(data), size);
    auto cut = all.find('\0');
    std::string_view source = all.substr(0, cut);
    std::string reply(cut == std::string_view::npos ? "" : all.substr(cut + 1));
    relayguard::DeliveryReport r;
    r.reporting_mta = "relay.example.org";
    r.queue_id = "q";
    r.sender = "a@example.org";
    r.recipients.push_back({"b@example.net", "rfc822;b+2B@example.net", "5.1.1", "mx.example.net", reply, reply});
    auto text = relayguard::render_report_template(source, relayguard::report_values(r));
    if (!text) return 0;
    std::string m = relayguard::compose_delivery_report(r, *text, "Subject: x\r\n\r\nbody\r\n", "B");
    for (std::size_t start = 0; start < m.size();) {
        auto nl = m.find("\r\n", start);
        if ((nl == std::string::npos ? m.size() : nl) - start > 998) std::abort();
        start = nl == std::string::npos ? m.size() : nl + 2;
    }
    return 0;
}
