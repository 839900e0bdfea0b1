// relayguard-relayd, the relay client: takes mail in (SMTP/LMTP on loopback,
// or files from relayguard-sendmail), keeps it in the queue directory, and
// delivers it by MX or through smart hosts, retrying until it is delivered or
// its lifetime ends. SIGHUP re-reads the config: routing and lifetimes apply
// to mail already queued.
//
//   relayguard-relayd [--config FILE]
//   relayguard-relayd [--config FILE] queue list | show ID | flush [ID] | delete ID | bounce ID
//   relayguard-relayd --help | --version
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>

#include "common/base/version.h"
#include "common/daemon/logging.h"
#include "conf/config.h"
#include "delivery/destination_state.h"
#include "delivery/queue/queue_admin.h"
#include "delivery/relay_daemon.h"

namespace {

using namespace relayguard;

constexpr int exit_usage = 64;
constexpr int exit_config = 78;

void usage(std::ostream& to) {
    to << "usage: relayguard-relayd [--config FILE]\n"
          "       relayguard-relayd [--config FILE] queue list | show ID | flush [ID] | delete ID | bounce ID\n"
          "       relayguard-relayd --help | --version\n"
          "Without --config it runs on the embedded default (the example configuration);\n"
          "the packaged service passes --config /etc/relayguard/relayguard.toml.\n";
}

// As postsuper does: a queue command run by root works as the queue's
// owner, so nothing it writes there becomes root's, and no link the owner
// planted in the queue directory can make root write elsewhere.
Status become_queue_owner(const std::string& queue_dir) {
    if (::geteuid() != 0) return Done{};
    struct stat st {};
    if (::stat(queue_dir.c_str(), &st) != 0 || st.st_uid == 0) return Done{};  // root's own queue, or none yet
    if (::setgroups(0, nullptr) != 0 || ::setgid(st.st_gid) != 0 || ::setuid(st.st_uid) != 0) {
        return Status::failure("cannot become the owner of " + queue_dir + ": " + std::strerror(errno));
    }
    return Done{};
}

// `relayguard-relayd queue ...`: the answer printed, as postqueue prints.
// `queue flush` ends the rests kept in the queue
// directory; a running relayd reads them again at its next attempt.
int queue_command(const DeliverySettings& s, const std::vector<std::string>& args) {
    DestinationState destinations(s.queue_dir + "/destinations");
    auto a = queue_request(s, args, destinations);
    std::cout << a.text;
    if (a.ok) return 0;
    std::cerr << "relayguard-relayd: " << a.error << "\n";
    return a.usage ? exit_usage : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    std::vector<std::string> queue_args;
    bool queue_mode = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if ((a == "--config" || a == "-c") && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a == "queue") {
            queue_mode = true;
            queue_args.assign(argv + i + 1, argv + argc);
            break;
        } else if (a == "--help" || a == "-h") {
            usage(std::cout);
            return 0;
        } else if (a == "--version") {
            std::cout << "relayguard-relayd " << relayguard_version() << "\n";
            return 0;
        } else {
            std::cerr << "relayguard-relayd: unknown argument '" << a << "'\n";
            usage(std::cerr);
            return exit_usage;
        }
    }
    auto loaded = load_config(config_path);
    for (const auto& e : loaded.errors) std::cerr << "relayguard-relayd: " << e.to_string() << "\n";
    if (!loaded.config) return exit_config;
    if (queue_mode) {
        if (auto owner = become_queue_owner(loaded.config->delivery.queue_dir); !owner) {
            std::cerr << "relayguard-relayd: " << owner.error() << "\n";
            return 1;
        }
    }
    if (auto logging = setup_logging(loaded.config->log, "relayguard-relayd"); !logging) {
        std::cerr << "relayguard-relayd: key 'log': " << logging.error() << "\n";
        return exit_config;
    }
    // After the logging: a message deleted or bounced here is a log line too.
    if (queue_mode) return queue_command(loaded.config->delivery, queue_args);
    // Every thread inherits these blocked: the main thread alone takes them
    // (sigwait), and a write to a closed socket fails with EPIPE instead.
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&signals, s);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    RelayDaemon daemon(std::move(*loaded.config), config_path);
    if (int status = daemon.start(); status != 0) return status;
    daemon.stop(daemon.run_until_signal());
    return 0;
}
