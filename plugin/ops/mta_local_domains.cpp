// The MTA's local domains in the policy, and the watch; see the header.
#include "plugin/ops/mta_local_domains.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace relayguard {

const char* mta_name(MtaKind kind) { return kind == MtaKind::postfix ? "postfix" : "sendmail"; }

Result<PolicyWithMtaDomains> add_mta_domains(const PolicySettings& base, const MtaDomainSource& source) {
    using R = Result<PolicyWithMtaDomains>;
    const std::string what = std::string("relay.local_domains_from = \"") + mta_name(source.kind) + "\"";
    auto read = read_mta_domains(source.kind, source.config);
    if (!read) return R::failure(what + ": " + read.error());
    for (const auto& u : read->unreadable) {
        if (source.stop_on_unreadable) {
            return R::failure(what + ": cannot list " + u +
                              "; list its domains in relay.local_domains and set relay.unreadable_domain_tables "
                              "= \"skip\"");
        }
        spdlog::warn("{}: skipped {}; mail to its domains is refused as relaying unless relay.local_domains "
                     "lists them",
                     what, u);
    }
    PolicyWithMtaDomains out{base, {}, read->watched};
    for (const auto& d : read->domains) {
        if (d.name.empty() || d.name == "." || d.name.find_first_of(" \t@/:") != std::string::npos) {
            spdlog::warn("{}: \"{}\" is not a domain name; ignored", what, d.name);
            continue;
        }
        out.policy.relay.local_domains.add(d.name, d.with_subdomains);
        out.names.push_back(d.with_subdomains ? d.name + "(+subdomains)" : d.name);
    }
    std::sort(out.names.begin(), out.names.end());
    out.names.erase(std::unique(out.names.begin(), out.names.end()), out.names.end());
    if (out.policy.relay.mode == RelayMode::restricted && out.policy.relay.local_domains.empty()) {
        return R::failure(what + ": no local domains: neither " + mta_name(source.kind) +
                          " nor relay.local_domains names one, so every recipient would be relaying");
    }
    return out;
}

FilesWatch::FilesWatch(std::chrono::milliseconds every, std::function<bool()> changed, std::function<void()> refresh)
    : every_(every), changed_(std::move(changed)), refresh_(std::move(refresh)) {}

FilesWatch::~FilesWatch() { stop(); }

void FilesWatch::start() { thread_ = std::thread([this] { run(); }); }

void FilesWatch::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void FilesWatch::run() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, every_, [this] { return stopping_; })) {
        lock.unlock();
        if (changed_()) refresh_();
        lock.lock();
    }
}

}  // namespace relayguard
