// What every source of authentication reports (Dovecot's auth policy
// requests, an MTA's log) does with one: hands it to the engine and writes
// what came of it: the failure, a block, a trusted group barred, an account
// under attack, a POP-before-SMTP window. One place, so both sources log
// alike and fail2ban reads them alike.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "policy/decision_engine.h"

namespace relayguard {

// Told when an account's logins failed from as many networks as
// limits.auth_failures.account_networks (the alert path).
using AccountAlert = std::function<void(const std::string& user, std::uint32_t networks, const IpAddress& last)>;

// `via` names the source in the log lines ("dovecot", "log").
void apply_auth_report(DecisionEngine& engine, const AuthReport& report, std::string_view via,
                       const AccountAlert& on_account_attack);

// Authentications reported since start, by source and outcome ("success",
// "failure", and "account_attack" for the failures that raised that alert).
struct AuthReportKey {
    std::string via, outcome;
    auto operator<=>(const AuthReportKey&) const = default;
};
std::map<AuthReportKey, std::uint64_t> auth_report_counts();

}  // namespace relayguard
