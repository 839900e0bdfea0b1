// relayguard, the policy daemon: parses its arguments, loads the
// configuration and sets up logging; PolicyDaemon (policy_daemon.h) does
// the rest and runs until SIGTERM or SIGINT; SIGHUP reloads.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "common/daemon/logging.h"
#include "common/base/version.h"
#include "conf/config.h"
#include "doctor/doctor.h"
#include "plugin/policy_daemon.h"

namespace {

constexpr int exit_usage = 64;   // EX_USAGE
constexpr int exit_config = 78;  // EX_CONFIG

void usage(std::FILE* to) {
    std::fputs(
        "usage: relayguard [--config FILE]\n"
        "       relayguard --help | --version\n"
        "       relayguard --check-config FILE\n"
        "       relayguard --print-default-config\n"
        "       relayguard doctor [--config FILE] [--postfix DIR | --sendmail-cf FILE] [--json | --summary]\n"
        "\n"
        "Without --config, relayguard runs on its embedded default: the example\n"
        "configuration (conf/relayguard.toml), in-memory counters, loopback sockets.\n",
        to);
}

bool report_errors(const relayguard::ConfigLoad& l) {
    for (const auto& e : l.errors) std::cerr << "relayguard: " << e.to_string() << "\n";
    return l.errors.empty();
}

// Every thread started after this inherits the mask, so no signal ever
// interrupts a worker; the main thread alone takes them, once everything
// is started (SignalInbox). SIGPIPE stays blocked everywhere: a write to a
// closed socket fails with EPIPE instead.
void block_signals() {
    sigset_t blocked;
    sigemptyset(&blocked);
    for (int sig : {SIGTERM, SIGINT, SIGPIPE, SIGHUP}) sigaddset(&blocked, sig);
    pthread_sigmask(SIG_BLOCK, &blocked, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && std::string(argv[1]) == "doctor") {
        return relayguard::run_doctor(std::vector<std::string>(argv + 2, argv + argc));
    }
    std::string config_path;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "--config" || a == "-c") && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a == "--check-config" && i + 1 < argc) {
            auto l = relayguard::load_config(argv[++i]);
            if (!report_errors(l)) return exit_config;
            std::cout << "# " << l.config->source << ": OK. Effective settings:\n" << relayguard::render_config(*l.config);
            return 0;
        } else if (a == "--print-default-config") {
            std::cout << relayguard::embedded_default_config();
            return 0;
        } else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else if (a == "--version") {
            std::cout << "relayguard " << relayguard::relayguard_version() << "\n";
            return 0;
        } else {
            std::cerr << "relayguard: unknown argument '" << a << "'\n";
            usage(stderr);
            return exit_usage;
        }
    }
    auto loaded = relayguard::load_config(config_path);
    if (!report_errors(loaded)) return exit_config;
    if (auto logging = relayguard::setup_logging(loaded.config->log, "relayguard"); !logging) {
        std::cerr << "relayguard: " << loaded.config->source << ": key 'log': " << logging.error() << "\n";
        return exit_config;
    }
    block_signals();
    relayguard::PolicyDaemon daemon(std::move(*loaded.config), config_path);
    if (int status = daemon.start(); status != 0) return status;
    daemon.stop(daemon.run_until_signal());
    return 0;
}
