// The relay client as one object: start() opens the queue and the
// resolver, binds the intake and admin sockets, drops privileges and starts
// the delivery threads; run_until_signal() takes signals (SIGHUP reloads);
// stop() ends intake and admin before the delivery threads finish what
// they hold. main() only parses arguments and loads the configuration.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "common/base/system_clock.h"
#include "common/base/unique_fd.h"
#include "common/daemon/admin_socket.h"
#include "common/daemon/metrics.h"
#include "common/net/dns_resolver.h"
#include "conf/config.h"
#include "delivery/deliverer.h"
#include "delivery/destination_state.h"
#include "delivery/oauth/oauth_tokens.h"
#include "delivery/oauth/token_endpoint.h"
#include "delivery/intake/intake_server.h"
#include "delivery/queue/queue.h"
#include "delivery/queue/queue_admission.h"
#include "delivery/scheduler.h"

namespace relayguard {

class RelayDaemon {
public:
    // `config_path` "" means the embedded default (reloads read it again).
    RelayDaemon(Config config, std::string config_path);
    ~RelayDaemon();
    RelayDaemon(const RelayDaemon&) = delete;
    RelayDaemon& operator=(const RelayDaemon&) = delete;

    // Answers 0 once serving, or the exit status when it cannot start.
    int start();
    // Until SIGTERM or SIGINT, which it names; SIGHUP reloads.
    std::string run_until_signal();
    void stop(const std::string& why);
    // SIGHUP and `relayguardctl reload relayd`; a config with errors is
    // refused, named in the failure, and the running one stays. Settings
    // bound at start keep their running values: the outcome names them.
    Result<ReloadOutcome> reload();

private:
    std::shared_ptr<const DeliverySettings> current();
    bool bind_sockets();
    // One admin request line ("ping", "reload", "queue ..."): its JSON reply.
    std::string answer_admin(std::string_view request);
    // "oauth login" and "oauth status" (relayguardctl oauth ...).
    std::string answer_oauth(const std::vector<std::string>& words);
    void add_metrics();
    void start_intake();

    Config config_;
    std::string config_path_;
    std::mutex settings_mutex_;
    std::shared_ptr<const DeliverySettings> settings_;
    SystemClock clock_;
    std::unique_ptr<Queue> queue_;
    QueueAdmission admission_{clock_};
    std::unique_ptr<DnsResolver> resolver_;
    std::unique_ptr<DestinationState> destinations_;
    CurlTokenEndpoint token_endpoint_;
    std::unique_ptr<OAuthTokens> oauth_;
    std::unique_ptr<Deliverer> deliverer_;
    UniqueFd listener_, admin_fd_;
    std::atomic<Scheduler*> scheduler_ptr_{nullptr};  // set once the scheduler runs
    std::mutex reload_mutex_;
    Config applied_;  // under reload_mutex_: the config in force, start-only parts as started
    std::unique_ptr<AdminSocket> admin_;
    MetricsExporter metrics_;
    std::unique_ptr<Scheduler> scheduler_;
    std::unique_ptr<IntakeServer> intake_;
};

}  // namespace relayguard
