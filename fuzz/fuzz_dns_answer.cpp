// libFuzzer target: DNS answer parsing (what a resolver sends back), for
// every record type the checks ask for.
#include "common/net/dns_message.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    using relayguard::DnsType;
    for (auto type : {DnsType::a, DnsType::aaaa, DnsType::mx, DnsType::ptr}) {
        (void)relayguard::parse_dns_answer(data, static_cast<int>(size), type);
    }
    return 0;
}
