// Token endpoint answers; see the header.
#include "delivery/oauth/token_response.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/base/text_codec.h"

namespace relayguard {

namespace {

using Json = nlohmann::json;

constexpr std::size_t max_token = 16 * 1024;
constexpr std::size_t max_text = 2048;  // descriptions, scopes, codes, URIs
constexpr long long max_lifetime = 366LL * 24 * 3600;

bool json_content(std::string_view content_type) {
    // "application/json", optionally with parameters ("; charset=utf-8").
    auto semi = content_type.find(';');
    auto type = ascii_lower(content_type.substr(0, semi));
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
    while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.erase(type.begin());
    return type == "application/json";
}

bool printable(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f) return false;
    }
    return true;
}

Result<Json> parse_object(std::string_view body, std::string_view content_type) {
    using R = Result<Json>;
    if (!json_content(content_type)) {
        return R::failure("the answer is not JSON (Content-Type \"" +
                          std::string(content_type.substr(0, 64)) + "\")");
    }
    if (body.size() > max_token_body) return R::failure("the answer is larger than 64 KiB");
    Json j = Json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded()) return R::failure("the answer is not valid JSON");
    if (!j.is_object()) return R::failure("the answer is not a JSON object");
    return j;
}

// A text field: absent is "", anything but a bounded printable string is an error.
Result<std::string> text_field(const Json& j, const char* name, std::size_t limit = max_text) {
    using R = Result<std::string>;
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) return std::string();
    if (!it->is_string()) return R::failure(std::string("\"") + name + "\" is not a string");
    const auto& s = it->get_ref<const std::string&>();
    if (s.size() > limit) return R::failure(std::string("\"") + name + "\" is too long");
    if (!printable(s)) return R::failure(std::string("\"") + name + "\" holds control characters");
    return s;
}

// A lifetime in seconds: a number, or digits in a string (older Microsoft
// endpoints send "3599"); absent is `fallback`.
Result<std::chrono::seconds> seconds_field(const Json& j, const char* name, std::chrono::seconds fallback) {
    using R = Result<std::chrono::seconds>;
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) return fallback;
    long long n = -1;
    if (it->is_number_integer()) {
        n = it->get<long long>();
    } else if (it->is_number_float()) {
        double d = it->get<double>();
        if (d >= 0 && d <= static_cast<double>(max_lifetime)) n = static_cast<long long>(d);
    } else if (it->is_string()) {
        const auto& s = it->get_ref<const std::string&>();
        if (!s.empty() && s.size() <= 10 && s.find_first_not_of("0123456789") == std::string::npos) n = std::stoll(s);
    }
    if (n < 0 || n > max_lifetime) return R::failure(std::string("\"") + name + "\" is not a lifetime in seconds");
    return std::chrono::seconds(n);
}

}  // namespace

bool plausible_token(std::string_view token) {
    if (token.empty() || token.size() > max_token) return false;
    for (unsigned char c : token) {
        if (c <= 0x20 || c >= 0x7f) return false;
    }
    return true;
}

Result<TokenAnswer> parse_token_answer(std::string_view body, std::string_view content_type) {
    using R = Result<TokenAnswer>;
    auto j = parse_object(body, content_type);
    if (!j) return R::failure(j.error());
    TokenAnswer answer;
    auto error = text_field(*j, "error", 128);
    if (!error) return R::failure(error.error());
    if (!error->empty()) {
        answer.error = *error;
        auto description = text_field(*j, "error_description");
        answer.description = description ? *description : "";
        return answer;
    }
    auto access = text_field(*j, "access_token", max_token);
    if (!access) return R::failure(access.error());
    if (access->empty()) return R::failure("the answer has neither an access token nor an error");
    if (!plausible_token(*access)) return R::failure("the access token holds blanks or characters outside ASCII");
    auto type = text_field(*j, "token_type", 64);
    if (!type) return R::failure(type.error());
    // Only bearer tokens can go into XOAUTH2 and OAUTHBEARER.
    if (ascii_lower(*type) != "bearer") {
        return R::failure(type->empty() ? "the answer names no token_type" : "token_type is not Bearer");
    }
    auto refresh = text_field(*j, "refresh_token", max_token);
    if (!refresh) return R::failure(refresh.error());
    if (!refresh->empty() && !plausible_token(*refresh)) {
        return R::failure("the refresh token holds blanks or characters outside ASCII");
    }
    // Without expires_in, assume a short life: a token used past its end
    // costs a refused AUTH and a deferral, one refreshed early costs nothing.
    auto lifetime = seconds_field(*j, "expires_in", std::chrono::minutes(10));
    if (!lifetime) return R::failure(lifetime.error());
    auto scope = text_field(*j, "scope");
    if (!scope) return R::failure(scope.error());
    answer.grant = TokenGrant{*access, *refresh, *lifetime, *scope};
    return answer;
}

Result<DeviceAuthorization> parse_device_authorization(std::string_view body, std::string_view content_type) {
    using R = Result<DeviceAuthorization>;
    auto j = parse_object(body, content_type);
    if (!j) return R::failure(j.error());
    if (auto error = text_field(*j, "error", 128); error && !error->empty()) {
        auto description = text_field(*j, "error_description");
        return R::failure("the server refused: " + *error +
                          (description && !description->empty() ? " (" + *description + ")" : ""));
    }
    DeviceAuthorization d;
    auto device = text_field(*j, "device_code", max_token);
    auto user = text_field(*j, "user_code", 128);
    // Google says verification_url; RFC 8628 says verification_uri.
    auto uri = text_field(*j, j->contains("verification_uri") ? "verification_uri" : "verification_url");
    auto complete = text_field(*j, "verification_uri_complete");
    for (const auto* f : {&device, &user, &uri, &complete}) {
        if (!*f) return R::failure(f->error());
    }
    if (device->empty() || !plausible_token(*device)) return R::failure("the answer has no usable device_code");
    if (user->empty() || !plausible_token(*user)) return R::failure("the answer has no usable user_code");
    if (uri->rfind("https://", 0) != 0 && uri->rfind("http://", 0) != 0) {
        return R::failure("the answer has no verification URI");
    }
    d.device_code = *device;
    d.user_code = *user;
    d.verification_uri = *uri;
    if (complete->rfind("https://", 0) == 0 || complete->rfind("http://", 0) == 0) d.verification_uri_complete = *complete;
    auto lifetime = seconds_field(*j, "expires_in", std::chrono::minutes(15));
    if (!lifetime) return R::failure(lifetime.error());
    auto interval = seconds_field(*j, "interval", std::chrono::seconds(5));
    if (!interval) return R::failure(interval.error());
    d.expires_in = *lifetime;
    // Never poll faster than once a second, nor wait longer than a minute.
    d.interval = std::clamp(*interval, std::chrono::seconds(1), std::chrono::seconds(60));
    return d;
}

}  // namespace relayguard
