// Postfix's effective configuration as `postconf` reports it: every main.cf
// parameter with $name references expanded (postconf -x), the -o overrides
// of master.cf services (postconf -P) and the services themselves
// (postconf -M). What `relayguard doctor` reads to find the wiring traps.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace relayguard {

struct MasterService {
    std::string name;     // "smtp", "submission", "127.0.0.1:2525"
    std::string type;     // "inet", "unix", "pass", ...
    std::string command;  // "smtpd", "postscreen", ...
};

struct PostfixConfig {
    std::string dir;  // "" = Postfix's default
    std::map<std::string, std::string> params;
    // "submission/inet" -> {"smtpd_milters" -> "..."}
    std::map<std::string, std::map<std::string, std::string>> overrides;
    std::vector<MasterService> services;

    // A parameter as `service` ("name/type") sees it: its -o override, else main.cf's.
    std::string value(const std::string& param, const std::string& service = "") const;
};

// Runs postconf -x, -Px and -M against `dir` ("" = Postfix's default).
Result<PostfixConfig> read_postfix_config(const std::string& dir);

// The pure parts, for tests: "name = value" lines into `params`;
// "service/type/name = value" lines into `overrides`; master.cf lines.
void parse_postconf_params(std::string_view text, std::map<std::string, std::string>& params);
void parse_postconf_overrides(std::string_view text,
                              std::map<std::string, std::map<std::string, std::string>>& overrides);
std::vector<MasterService> parse_master_services(std::string_view text);

}  // namespace relayguard
