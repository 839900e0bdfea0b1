// Policy request parsing; see the header.
#include "plugin/frontends/policy_request.h"

namespace relayguard {

std::optional<PolicyRequest> PolicyRequestReader::next(std::string& error) {
    error.clear();
    // A request ends at an empty line; Postfix writes "\n", hand-typed
    // clients (telnet, nc -C) "\r\n": accept both.
    std::size_t end = std::string::npos;
    std::size_t skip = 0;
    for (std::size_t pos = buffer_.find('\n'); pos != std::string::npos; pos = buffer_.find('\n', pos + 1)) {
        std::size_t next = pos + 1;
        if (next < buffer_.size() && buffer_[next] == '\n') { end = pos + 1; skip = 1; break; }
        if (next + 1 < buffer_.size() && buffer_[next] == '\r' && buffer_[next + 1] == '\n') { end = pos + 1; skip = 2; break; }
        if (pos == 0) { end = 0; skip = 1; break; }
    }
    if (end == std::string::npos) {
        if (buffer_.size() > max_bytes_) error = "request larger than " + std::to_string(max_bytes_) + " bytes";
        return std::nullopt;
    }
    if (end > max_bytes_) {
        error = "request larger than " + std::to_string(max_bytes_) + " bytes";
        return std::nullopt;
    }
    std::string_view block(buffer_.data(), end);
    PolicyRequest req;
    while (!block.empty()) {
        std::size_t nl = block.find('\n');
        std::string_view line = block.substr(0, nl);
        block.remove_prefix(nl == std::string_view::npos ? block.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::size_t eq = line.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            error = "line without name=value";
            return std::nullopt;
        }
        if (line.find('\0') != std::string_view::npos) {
            error = "NUL byte in request";
            return std::nullopt;
        }
        if (req.attributes.size() >= max_attributes) {
            error = "more than " + std::to_string(max_attributes) + " attributes";
            return std::nullopt;
        }
        // A repeated attribute keeps its first value: later copies cannot
        // override what Postfix put first.
        req.attributes.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
    }
    buffer_.erase(0, end + skip);
    if (req.get("request") != "smtpd_access_policy") {
        error = "not a request=smtpd_access_policy";
        return std::nullopt;
    }
    return req;
}

}  // namespace relayguard
