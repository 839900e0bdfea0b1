// Local submission's additions; see the header.
#include "delivery/intake/local_submission.h"

#include <algorithm>
#include <fstream>
#include <string_view>

#include "common/base/text_codec.h"

namespace relayguard {

std::string mail_origin(const DeliverySettings& s, const std::string& mailname_file, const std::string& host) {
    if (!s.origin.empty()) return s.origin;
    std::ifstream in(mailname_file);
    std::string line;
    if (in && std::getline(in, line)) {
        auto end = line.find_last_not_of(" \t\r");
        line = end == std::string::npos ? "" : line.substr(0, end + 1);
        if (line.find('.') != std::string::npos && line.find_first_of(" \t@<>") == std::string::npos) return line;
    }
    if (host.find('.') != std::string::npos) return host;
    return host + ".localdomain";
}

std::string qualified(const std::string& address, const std::string& origin) {
    if (address.empty() || address.find('@') != std::string::npos) return address;
    return address + "@" + origin;
}

namespace {

// Whether the first line is a header field: a name of printable characters
// but the colon, then a colon (RFC 5322 2.2).
bool starts_with_header(std::string_view content) {
    std::size_t i = 0;
    while (i < content.size() && content[i] > ' ' && content[i] < 0x7f && content[i] != ':') ++i;
    return i > 0 && i < content.size() && content[i] == ':';
}

// Whether the header section (up to the first empty line, or the first
// line that is no header field) has a field of this name, in any case.
bool has_header(const std::string& content, const std::string& name) {
    std::string wanted = ascii_lower(name) + ":";
    std::string_view rest = content;
    while (!rest.empty()) {
        std::size_t eol = std::min(rest.find("\r\n"), rest.size());
        std::string_view line = rest.substr(0, eol);
        rest.remove_prefix(std::min(eol + 2, rest.size()));
        if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) continue;  // a folded line
        if (!starts_with_header(line)) return false;
        if (ascii_lower(line.substr(0, wanted.size())) == wanted) return true;
    }
    return false;
}

// A display name as an RFC 5322 quoted string; controls dropped.
std::string quoted_name(const std::string& name) {
    std::string out = "\"";
    for (char c : name) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) continue;
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

}  // namespace

std::string with_missing_headers(const std::string& content, const LocalSender& sender, TimePoint now,
                                 const std::string& queue_id, const std::string& origin) {
    std::string added;
    if (!has_header(content, "From") && !sender.address.empty()) {
        added += "From: " + (sender.full_name.empty() ? sender.address
                                                      : quoted_name(sender.full_name) + " <" + sender.address + ">") +
                 "\r\n";
    }
    if (!has_header(content, "Date")) added += "Date: " + rfc5322_date(now) + "\r\n";
    if (!has_header(content, "Message-ID")) added += "Message-ID: <" + queue_id + "@" + origin + ">\r\n";
    // A message that starts with its body (no header field first) needs
    // the empty line that ends the new header section.
    if (!starts_with_header(content) && content.rfind("\r\n", 0) != 0) added += "\r\n";
    return added + content;
}

}  // namespace relayguard
