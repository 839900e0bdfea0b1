// The policy daemon as one object: start() wires the store, the resolver,
// the metrics and the engine, binds every socket, drops privileges and
// starts the front ends; run_until_signal() takes signals (SIGHUP reloads);
// stop() ends the front ends in the order their threads need. main() only
// parses arguments and loads the configuration.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/base/system_clock.h"
#include "common/base/unique_fd.h"
#include "common/daemon/metrics.h"
#include "common/daemon/pid_file.h"
#include "common/net/dns_resolver.h"
#include "conf/config.h"
#include "plugin/frontends/policy_server.h"
#include "plugin/frontends/transaction_ledger.h"
#include "plugin/frontends/dovecot_policy_server.h"
#include "plugin/ops/admin_server.h"
#include "plugin/ops/alert_mailer.h"
#include "plugin/ops/engine_holder.h"
#include "plugin/ops/login_log_follower.h"
#include "plugin/ops/mta_local_domains.h"
#include "plugin/ops/reload_requests.h"
#include "plugin/ops/signal_inbox.h"
#include "plugin/stores/resolver_dns_answers.h"
#include "plugin/stores/shared_state.h"

namespace relayguard {

class PolicyDaemon final : private AccountObserver {
public:
    // `config_path` "" means the embedded default (reloads read it again).
    PolicyDaemon(Config config, std::string config_path);
    ~PolicyDaemon();
    PolicyDaemon(const PolicyDaemon&) = delete;
    PolicyDaemon& operator=(const PolicyDaemon&) = delete;

    // Answers 0 once serving, or the exit status when it cannot start.
    int start();
    // Until SIGTERM, SIGINT or the milter ending; answers why.
    std::string run_until_signal();
    void stop(const std::string& why);
    // SIGHUP and `relayguardctl reload`: the new policy applies to the next
    // decision; a config with errors is refused and the running one stays.
    // Settings bound at start (sockets, store, logging, ...) keep their
    // running values: the outcome names them.
    Result<ReloadOutcome> reload();

private:
    void announce_alerts();
    bool wire_resolver();
    void wire_metrics();
    bool bind_sockets();
    bool drop_privileges_and_write_pid();
    void start_front_ends();
    void follow_logins();
    void follow_auth_failures();
    void on_account_attack(const std::string& user, std::uint32_t networks, const IpAddress& last);
    // An account newly marked compromised: the log line, the alert, the command.
    void account_compromised(const std::string& user, const std::string& reason, const IpAddress& client) override;
    std::shared_ptr<DecisionEngine> make_engine(const PolicySettings& policy);
    // The policy of `c` with the MTA's domains added when it asks for them;
    // remembers what to watch and what was read, for refresh_mta_domains().
    Result<PolicySettings> effective_policy(const Config& c);
    // A file behind the MTA's domains changed: read them again.
    void refresh_mta_domains();
    void watch_mta_domains();
    void start_milter_thread();

    // main() blocks SIGTERM, SIGINT, SIGHUP and SIGPIPE before it builds the
    // daemon, so every thread started here inherits them blocked; only
    // run_until_signal() takes them.
    Config config_;
    std::string config_path_;
    SystemClock clock_;
    AlertMailer alerts_;
    std::unique_ptr<SharedState> state_;
    std::unique_ptr<DnsResolver> resolver_;  // only when a DNS check is on
    std::optional<ResolverDnsAnswers> dns_;
    MetricsExporter metrics_;
    std::unique_ptr<EngineHolder> engine_;
    // Shared by the two front ends, so that a message both report counts once.
    TransactionLedger ledger_;
    std::mutex reload_mutex_;
    // Under reload_mutex_: the config last applied (at start or by a
    // reload), and the MTA's domains read for it.
    Config applied_;
    std::vector<std::string> mta_domain_names_;
    // The files behind the MTA's domains and their fingerprint when last
    // read, under watched_mutex_; empty when the domains are not the MTA's.
    std::mutex watched_mutex_;
    std::vector<std::string> mta_watched_;
    std::string mta_fingerprint_;
    std::string mta_refresh_error_;  // under reload_mutex_: logged once until it changes
    std::unique_ptr<FilesWatch> mta_watch_;  // started with the first config that reads the MTA
    UniqueFd policy_fd_, admin_fd_;
    // After the drop, as Postfix's master does it: the daemon's own user
    // owns the file and can remove it at exit. Declared before everything
    // that serves, so it is removed only once they have all stopped.
    std::optional<PidFile> pid_file_;
    std::unique_ptr<PolicyServer> policy_;
    std::unique_ptr<AdminServer> admin_;
    std::unique_ptr<DovecotPolicyServer> dovecot_;
    std::unique_ptr<LoginLogFollower> follower_;
    std::vector<std::unique_ptr<LoginLogFollower>> auth_log_followers_;
    std::unique_ptr<ReloadRequests> reloads_;
    std::unique_ptr<SignalInbox> inbox_;
    std::atomic<bool> milter_ended_{false};
    std::thread milter_thread_;
};

}  // namespace relayguard
