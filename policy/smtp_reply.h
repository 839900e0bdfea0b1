// An SMTP reply as a rule wants it sent: basic code, RFC 3463 enhanced status
// code and text. Every refusal the engine makes carries one.
#pragma once

#include <string>

namespace relayguard {

struct SmtpReply {
    int code = 0;         // 4xx temporary, 5xx permanent
    std::string status;   // enhanced status code, e.g. "5.7.1"
    std::string text;

    bool temporary() const { return code >= 400 && code < 500; }
    std::string to_string() const { return std::to_string(code) + " " + status + " " + text; }
    friend bool operator==(const SmtpReply&, const SmtpReply&) = default;
};

}  // namespace relayguard
