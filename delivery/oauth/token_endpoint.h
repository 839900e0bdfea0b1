// The relay client's only HTTP: form POSTs to an OAuth2 token endpoint (and
// the device authorisation endpoint), over HTTPS with the server's
// certificate checked, no redirects followed, the whole exchange within a
// time limit and the answer within 64 KiB, so a slow, huge or lying
// endpoint defers mail instead of stalling or exhausting the relay client.
// An interface, so the token logic is unit-tested without a network; the
// real one is libcurl.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/base/clock.h"
#include "common/base/result.h"

namespace relayguard {

struct HttpAnswer {
    long status = 0;
    std::string content_type;
    std::string body;
};

using FormFields = std::vector<std::pair<std::string, std::string>>;

class TokenEndpoint {
public:
    virtual ~TokenEndpoint() = default;
    // A failure names what went wrong on the way (never a field's value).
    virtual Result<HttpAnswer> post(const std::string& url, const FormFields& form, const std::string& ca_file,
                                    Duration timeout) = 0;
};

class CurlTokenEndpoint final : public TokenEndpoint {
public:
    CurlTokenEndpoint();
    Result<HttpAnswer> post(const std::string& url, const FormFields& form, const std::string& ca_file,
                            Duration timeout) override;
};

}  // namespace relayguard
