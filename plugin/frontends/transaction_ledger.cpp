// The ledger of transactions both front ends report; see the header.
#include "plugin/frontends/transaction_ledger.h"

namespace relayguard {

TransactionLedger::Entry& TransactionLedger::touch(const std::string& session, TimePoint now) {
    auto it = entries_.find(session);
    if (it == entries_.end()) {
        // Make room: the least recently touched go first.
        while (!order_.empty() && entries_.size() >= max_entries_) {
            entries_.erase(order_.front());
            order_.pop_front();
        }
        it = entries_.try_emplace(session).first;
    } else {
        order_.erase(it->second.age);
    }
    order_.push_back(session);
    it->second.age = std::prev(order_.end());
    it->second.touched = now;
    return it->second;
}

void TransactionLedger::expire(TimePoint now) {
    // Oldest first: stop at the first entry that is still young.
    while (!order_.empty()) {
        auto it = entries_.find(order_.front());
        if (now - it->second.touched <= max_age_) break;
        entries_.erase(it);
        order_.pop_front();
    }
}

void TransactionLedger::milter_mail(const std::string& session, bool let_through, TimePoint now) {
    std::lock_guard lock(mutex_);
    expire(now);
    Entry& e = touch(session, now);
    e.milter_mail = let_through;
    e.instance.clear();
}

bool TransactionLedger::mail_checked_elsewhere(const std::string& session, const std::string& instance,
                                               TimePoint now) {
    std::lock_guard lock(mutex_);
    expire(now);
    auto it = entries_.find(session);
    if (it == entries_.end() || !it->second.milter_mail || instance.empty()) return false;
    Entry& e = touch(session, now);
    if (e.instance.empty()) {
        e.instance = instance;  // this policy transaction is the milter's current one
        return true;
    }
    return e.instance == instance;
}

bool TransactionLedger::first_to_count(const std::string& session, const std::string& queue_id, TimePoint now) {
    if (queue_id.empty()) return true;
    std::lock_guard lock(mutex_);
    expire(now);
    Entry& e = touch(session, now);
    if (e.counted_queue_id == queue_id) return false;
    e.counted_queue_id = queue_id;
    return true;
}

void TransactionLedger::policy_refused(const std::string& session, const std::string& rule, TimePoint now) {
    std::lock_guard lock(mutex_);
    Entry& e = touch(session, now);
    ++e.policy_refusals.count;
    e.policy_refusals.last_rule = rule;
}

TransactionLedger::Refusals TransactionLedger::session_closed(const std::string& session) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(session);
    if (it == entries_.end()) return {};
    Refusals r = std::move(it->second.policy_refusals);
    order_.erase(it->second.age);
    entries_.erase(it);
    return r;
}

std::size_t TransactionLedger::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace relayguard
