// libFuzzer target: what an OAuth2 token endpoint answers (a grant, an
// error, a device authorisation), as the relay client parses it, under
// both content types it may claim; a token it takes must be plausible.
#include <cstdlib>
#include <string>

#include "delivery/oauth/token_response.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string_view body(reinterpret_cast<const char*>(data), size);
    for (const char* type : {"application/json; charset=utf-8", "text/html"}) {
        auto answer = relayguard::parse_token_answer(body, type);
        if (answer && answer->grant) {
            if (!relayguard::plausible_token(answer->grant->access_token)) std::abort();
            if (!answer->grant->refresh_token.empty() && !relayguard::plausible_token(answer->grant->refresh_token)) {
                std::abort();
            }
        }
        auto device = relayguard::parse_device_authorization(body, type);
        if (device && !relayguard::plausible_token(device->device_code)) std::abort();
    }
    return 0;
}
