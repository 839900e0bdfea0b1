// SMTP envelope syntax; see the header.
#include "delivery/intake/envelope_syntax.h"

#include "common/base/text_codec.h"
#include "delivery/queue/queue_file.h"

namespace relayguard {

std::optional<std::pair<std::string, std::string>> path_and_params(std::string_view rest) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.empty() || rest.front() != '<') return std::nullopt;
    auto close = rest.find('>');
    if (close == std::string_view::npos) return std::nullopt;
    std::string addr(rest.substr(1, close - 1));
    if (!storable_address(addr)) return std::nullopt;
    // What is taken here is said again to the next hop: no space, control
    // byte or angle bracket may ride along (UTF-8 bytes may, for SMTPUTF8).
    for (unsigned char c : addr) {
        if (c <= 0x20 || c == 0x7f || c == '<') return std::nullopt;
    }
    return std::make_pair(addr, std::string(rest.substr(close + 1)));
}

std::optional<EsmtpParams> esmtp_params(std::string_view text) {
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
    std::vector<std::pair<std::string, std::string>> out;
    while (!text.empty()) {
        while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
        auto end = text.find(' ');
        std::string_view word = text.substr(0, end);
        text.remove_prefix(end == std::string_view::npos ? text.size() : end);
        if (word.empty()) continue;
        auto eq = word.find('=');
        std::string_view key = word.substr(0, eq);
        if (key.empty() || !alnum(key.front())) return std::nullopt;
        for (char c : key) {
            if (!alnum(c) && c != '-') return std::nullopt;
        }
        std::string_view value = eq == std::string_view::npos ? std::string_view{} : word.substr(eq + 1);
        if (eq != std::string_view::npos && value.empty()) return std::nullopt;
        for (unsigned char c : value) {
            if (c < 33 || c == 127) return std::nullopt;
        }
        out.emplace_back(ascii_upper(key), std::string(value));
    }
    return out;
}

bool valid_xtext(std::string_view v) {
    for (std::size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (c == '+') {
            auto hex = [](char h) { return (h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'); };
            if (i + 2 >= v.size() || !hex(v[i + 1]) || !hex(v[i + 2])) return false;
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return false;
        }
    }
    return true;
}

std::string valid_notify(std::string_view v) {
    std::string u = ascii_upper(v);
    if (u == "NEVER") return u;
    std::size_t start = 0;
    while (true) {
        auto comma = u.find(',', start);
        std::string_view item = std::string_view(u).substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (item != "SUCCESS" && item != "FAILURE" && item != "DELAY") return "";  // an empty item too
        if (comma == std::string::npos) return u;
        start = comma + 1;
    }
}

bool valid_orcpt(std::string_view v) {
    auto semi = v.find(';');
    if (semi == std::string_view::npos || semi == 0 || v.size() > 500) return false;
    for (char c : v.substr(0, semi)) {
        bool atom = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!atom) return false;
    }
    return semi + 1 < v.size() && valid_xtext(v.substr(semi + 1));
}

}  // namespace relayguard
