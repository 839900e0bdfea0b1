// libFuzzer target: what a client writes after MAIL FROM: / RCPT TO: at the
// relay client's intake — the <path>, the ESMTP parameters and the RFC 3461
// values. Besides not crashing, what is accepted must be safe to store: an
// address with no space, '>' or control byte, parameters with RFC 5321
// keywords and printable values, and NOTIFY made of known words.
#include <cstdlib>
#include <string>

#include "delivery/intake/envelope_syntax.h"

namespace {
void require(bool ok) {
    if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto parsed = relayguard::path_and_params(text)) {
        for (unsigned char c : parsed->first) require(c > 0x20 && c != 0x7f && c != '>' && c != '<');
        auto params = relayguard::esmtp_params(parsed->second);
        if (!params) return 0;
        for (const auto& [key, value] : *params) {
            require(!key.empty() && key.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == std::string::npos);
            for (unsigned char c : value) require(c > 0x20 && c != 0x7f);
            if (key == "NOTIFY") {
                std::string n = relayguard::valid_notify(value);
                require(n.empty() || n == "NEVER" || n.find_first_not_of("SUCCESFAILURDELY,") == std::string::npos);
            } else if (key == "ORCPT" && relayguard::valid_orcpt(value)) {
                require(value.find(';') != std::string::npos && value.size() <= 500);
            } else if (key == "ENVID" && relayguard::valid_xtext(value)) {
                for (unsigned char c : value) require(c >= 33 && c <= 126 && c != '=');
            }
        }
    }
    return 0;
}
