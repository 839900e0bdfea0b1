// relay.local_domains_from: the policy's local domains with the MTA's own
// added, and a watch that reads them again when the MTA's files change, so
// a domain added to Postfix is local here within seconds, with no reload.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/base/result.h"
#include "common/mta/mta_domains.h"
#include "policy/policy_settings.h"

namespace relayguard {

struct MtaDomainSource {
    MtaKind kind = MtaKind::postfix;
    std::string config;           // Postfix's directory or sendmail.cf; "" = default
    bool stop_on_unreadable = true;  // false: skip such a table, warning
};

struct PolicyWithMtaDomains {
    PolicySettings policy;
    std::vector<std::string> names;    // the MTA's domains, sorted, for the log
    std::vector<std::string> watched;  // files whose change means read again
};

// `base` with the MTA's domains added. Fails (naming the MTA, the table and
// the fix) when the MTA cannot be read, a table cannot be listed and
// `stop_on_unreadable`, or when no local domain is left in restricted mode.
Result<PolicyWithMtaDomains> add_mta_domains(const PolicySettings& base, const MtaDomainSource& source);

const char* mta_name(MtaKind kind);

// Asks `changed` every `every` and calls `refresh` while it answers true:
// a refresh that failed (a table read while postmap rewrote it) is tried
// again at the next poll, since what was read is not what is on disk.
class FilesWatch {
public:
    FilesWatch(std::chrono::milliseconds every, std::function<bool()> changed, std::function<void()> refresh);
    ~FilesWatch();
    FilesWatch(const FilesWatch&) = delete;
    FilesWatch& operator=(const FilesWatch&) = delete;
    void start();
    void stop();

private:
    void run();
    std::chrono::milliseconds every_;
    std::function<bool()> changed_;
    std::function<void()> refresh_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace relayguard
