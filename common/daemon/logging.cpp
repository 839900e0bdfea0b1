// Logging set-up; see the header.
#include "common/daemon/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <syslog.h>

namespace relayguard {
namespace {
std::shared_ptr<spdlog::logger> g_security;
std::shared_ptr<spdlog::logger> g_connections;

constexpr const char* line_pattern = "%Y-%m-%dT%H:%M:%S.%e%z %n[%P] %l: %v";

// The file and stderr pattern on every sink of `logger` but its own syslog
// sinks (the first `targets` sinks mirror log.targets), which keep theirs.
void set_pattern_except_syslog(spdlog::logger& logger, std::size_t targets) {
    auto& sinks = logger.sinks();
    for (std::size_t i = 0; i < sinks.size(); ++i) {
        if (i < targets && std::dynamic_pointer_cast<spdlog::sinks::syslog_sink_mt>(sinks[i])) continue;
        sinks[i]->set_pattern(line_pattern);
    }
}

}  // namespace

Status setup_logging(const LogSettings& settings, const std::string& program) {
    std::vector<spdlog::sink_ptr> sinks;
    try {
        for (const auto& t : settings.targets) {
            if (t == "stderr") {
                sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
            } else if (t == "syslog") {
                sinks.push_back(std::make_shared<spdlog::sinks::syslog_sink_mt>(program, LOG_PID, LOG_MAIL, false));
            } else {
                sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(t));
            }
        }
        auto main = std::make_shared<spdlog::logger>(program, sinks.begin(), sinks.end());
        main->set_level(spdlog::level::from_str(settings.level == "warning" ? "warn" : settings.level));
        main->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %n[%P] %l: %v");
        main->flush_on(spdlog::level::info);
        spdlog::set_default_logger(main);

        // Over syslog only the message travels, under the program's tag: the
        // security and connection lines carry their logger's name and level
        // in it, so `grep relayguard/security` and fail2ban find them in the
        // journal and in mail.log as in the files.
        auto marked = [&](const std::string& name) {
            std::vector<spdlog::sink_ptr> out;
            for (std::size_t i = 0; i < sinks.size(); ++i) {
                if (settings.targets[i] != "syslog") {
                    out.push_back(sinks[i]);
                    continue;
                }
                auto own = std::make_shared<spdlog::sinks::syslog_sink_mt>(program, LOG_PID, LOG_MAIL, true);
                own->set_pattern(name + " %l: %v");
                out.push_back(own);
            }
            return out;
        };
        std::vector<spdlog::sink_ptr> security_sinks = marked(program + "/security");
        if (!settings.security_log.empty()) {
            auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(settings.security_log);
            security_sinks.push_back(file);
        }
        g_security = std::make_shared<spdlog::logger>(program + "/security", security_sinks.begin(), security_sinks.end());
        set_pattern_except_syslog(*g_security, settings.targets.size());
        g_security->set_level(spdlog::level::info);
        g_security->flush_on(spdlog::level::info);

        if (settings.connection_log) {
            std::vector<spdlog::sink_ptr> connection_sinks = marked(program + "/connection");
            if (!settings.connection_log_file.empty()) {
                connection_sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(settings.connection_log_file));
            }
            g_connections = std::make_shared<spdlog::logger>(program + "/connection", connection_sinks.begin(),
                                                             connection_sinks.end());
            set_pattern_except_syslog(*g_connections, settings.targets.size());
            g_connections->set_level(spdlog::level::info);
            g_connections->flush_on(spdlog::level::info);
        }
    } catch (const spdlog::spdlog_ex& e) {
        return Status::failure(e.what());
    }
    return Done{};
}

std::shared_ptr<spdlog::logger> security_log() {
    if (!g_security) g_security = spdlog::default_logger();
    return g_security;
}

std::shared_ptr<spdlog::logger> connection_log() { return g_connections; }

}  // namespace relayguard
