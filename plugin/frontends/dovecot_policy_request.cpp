// Dovecot auth policy requests; see the header. Every field is bounded
// and a login name may hold no control character: what a client typed at
// a login prompt ends up in our logs and in Redis keys.
#include "plugin/frontends/dovecot_policy_request.h"

#include <nlohmann/json.hpp>

namespace relayguard {

namespace {

using Parsed = Result<DovecotPolicyRequest>;

constexpr std::size_t max_login = 256;
constexpr std::size_t max_field = 128;

// The string `key` of `j`, or "" when absent; a failure when it is there
// but not a short string.
Result<std::string> text_field(const nlohmann::json& j, const char* key, std::size_t max) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::string();
    if (!it->is_string()) return Result<std::string>::failure(std::string(key) + " is not a string");
    const auto& v = it->get_ref<const std::string&>();
    if (v.size() > max) return Result<std::string>::failure(std::string(key) + " is longer than " + std::to_string(max));
    for (unsigned char c : v) {
        if (c < 0x20 || c == 0x7f) return Result<std::string>::failure(std::string(key) + " holds a control character");
    }
    return v;
}

}  // namespace

Parsed parse_dovecot_policy_request(std::string_view command, std::string_view body) {
    DovecotPolicyRequest r;
    if (command == "allow") r.command = DovecotPolicyRequest::Command::allow;
    else if (command == "report") r.command = DovecotPolicyRequest::Command::report;
    else return Parsed::failure("unknown command (expected allow or report)");

    auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Parsed::failure("the body is not a JSON object");

    auto remote = text_field(j, "remote", max_field);
    if (!remote) return Parsed::failure(remote.error());
    auto address = IpAddress::parse(*remote);
    if (!address) return Parsed::failure("remote is not an IP address (auth_policy_request_attributes needs remote=%{rip})");
    r.remote = *address;

    auto login = text_field(j, "login", max_login);
    if (!login) return Parsed::failure(login.error());
    r.login = std::move(*login);
    auto pwhash = text_field(j, "pwhash", max_field);
    if (!pwhash) return Parsed::failure(pwhash.error());
    r.pwhash = std::move(*pwhash);
    auto protocol = text_field(j, "protocol", max_field);
    if (!protocol) return Parsed::failure(protocol.error());
    r.protocol = std::move(*protocol);

    if (r.command == DovecotPolicyRequest::Command::report) {
        auto success = j.find("success");
        if (success == j.end() || !success->is_boolean()) return Parsed::failure("a report without a boolean success");
        r.success = success->get<bool>();
        auto rejected = j.find("policy_reject");
        r.policy_reject = rejected != j.end() && rejected->is_boolean() && rejected->get<bool>();
    }
    return r;
}

std::string dovecot_policy_answer(const Decision& d) {
    nlohmann::json j;
    if (d.refused()) {
        j = {{"status", -1}, {"msg", d.reply.text}};
    } else {
        j = {{"status", 0}, {"msg", ""}};
    }
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace relayguard
