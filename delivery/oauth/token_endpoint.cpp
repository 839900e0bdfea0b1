// The token endpoint over libcurl; see the header.
#include "delivery/oauth/token_endpoint.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "common/base/version.h"
#include "delivery/oauth/token_response.h"

namespace relayguard {

namespace {

struct Received {
    std::string body;
    bool too_large = false;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
    auto* r = static_cast<Received*>(user);
    std::size_t len = size * n;
    if (r->body.size() + len > max_token_body) {
        r->too_large = true;
        return 0;  // aborts the transfer
    }
    r->body.append(data, len);
    return len;
}

struct FreeCurl {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct FreeList {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

CurlTokenEndpoint::CurlTokenEndpoint() {
    // Once per process, before any thread uses libcurl.
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Result<HttpAnswer> CurlTokenEndpoint::post(const std::string& url, const FormFields& form, const std::string& ca_file,
                                           Duration timeout) {
    using R = Result<HttpAnswer>;
    std::unique_ptr<CURL, FreeCurl> curl(curl_easy_init());
    if (!curl) return R::failure("cannot start an HTTP client");
    std::string body;
    for (const auto& [key, value] : form) {
        std::unique_ptr<char, decltype(&curl_free)> k(curl_easy_escape(curl.get(), key.c_str(), static_cast<int>(key.size())), curl_free);
        std::unique_ptr<char, decltype(&curl_free)> v(curl_easy_escape(curl.get(), value.c_str(), static_cast<int>(value.size())), curl_free);
        if (!k || !v) return R::failure("cannot encode the request");
        body += (body.empty() ? "" : "&") + std::string(k.get()) + "=" + v.get();
    }
    std::unique_ptr<curl_slist, FreeList> headers(curl_slist_append(nullptr, "Accept: application/json"));
    Received received;
    char error[CURL_ERROR_SIZE] = "";
    std::string agent = "relayguard-relayd/" + std::string(relayguard_version());
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");  // never plain HTTP: the secret and tokens cross it
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // delivery threads: no SIGALRM for timeouts
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_USERAGENT, agent.c_str());
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_token_body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &received);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    CURLcode rc = curl_easy_perform(c);
    if (received.too_large || rc == CURLE_FILESIZE_EXCEEDED) return R::failure("the answer is larger than 64 KiB");
    if (rc != CURLE_OK) {
        std::string why = error[0] ? error : curl_easy_strerror(rc);
        if (rc == CURLE_OPERATION_TIMEDOUT) why = "no complete answer within " + std::to_string(timeout.count() / 1000) + " s";
        return R::failure(why);
    }
    HttpAnswer answer;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &answer.status);
    char* type = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
    answer.content_type = type ? type : "";
    answer.body = std::move(received.body);
    return answer;
}

}  // namespace relayguard
