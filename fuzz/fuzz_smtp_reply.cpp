// libFuzzer target: SMTP reply parsing (what a remote server says to the
// relay client) and the status-code extraction used in delivery reports.
#include <string>

#include "common/net/smtp_client.h"
#include "delivery/reports/delivery_report.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string buffer(reinterpret_cast<const char*>(data), size);
    while (true) {
        auto r = relayguard::parse_smtp_response(buffer);
        if (!r || !*r) break;
        (void)relayguard::enhanced_status((*r)->text(), (*r)->permanent());
    }
    (void)relayguard::dot_stuff(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
