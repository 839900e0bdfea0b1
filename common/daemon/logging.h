// Logging set-up shared by both daemons: the main log (stderr, syslog or
// files, as configured) and the security log, where every refusal is one
// line of key=value pairs that fail2ban and grep can read.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "common/base/result.h"
#include "common/daemon/log_settings.h"

namespace relayguard {

// Installs the configured sinks, or says why it cannot.
Status setup_logging(const LogSettings& settings, const std::string& program);

// The security log: refusals only. Lines also go to the main log.
std::shared_ptr<spdlog::logger> security_log();
// The connection log (log.connection_log), or nullptr when it is off.
std::shared_ptr<spdlog::logger> connection_log();

}  // namespace relayguard
