// The file of per-account and per-domain sending quotas
// (limits.user_quotas.overrides_file), read with the config and again at
// every reload. One line each, "#" comments:
//   alice@example.org  messages_per_hour=500 messages_per_day=2000
//   @example.net       recipients_per_day=10000
//   bob@example.org    messages_per_hour=off
// A limit a line does not name comes from the line of the account's domain,
// then from [limits.user_quotas]; "off" lifts it for that account.
#pragma once

#include <string>
#include <vector>

#include "conf/config.h"

namespace relayguard {

// Fills quotas.users and quotas.domains from quotas.overrides_file; errors
// name that file and line (or the config's key when it cannot be read).
void read_user_quota_file(UserQuotaSettings& quotas, std::vector<ConfigError>& errors, const std::string& config_file,
                          int config_line);

}  // namespace relayguard
