// libFuzzer target: the Postfix policy delegation request reader, fed the
// bytes in arbitrary chunks as a socket would deliver them.
#include <string>

#include "plugin/frontends/policy_request.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    relayguard::PolicyRequestReader reader(4096);
    std::string_view all(reinterpret_cast<const char*>(data), size);
    // The first byte chooses the chunk size, so splits are explored too.
    std::size_t chunk = size > 0 ? 1 + data[0] % 64 : 1;
    for (std::size_t at = 0; at < all.size(); at += chunk) {
        reader.append(all.substr(at, chunk));
        std::string error;
        while (auto r = reader.next(error)) (void)r->get("client_address");
        if (!error.empty()) break;  // the connection would be closed
    }
    return 0;
}
