// The decision engine in force, replaceable while the daemon runs: a reload
// builds a new engine from the new settings over the same counter store,
// clock, POP windows and resolver, and swaps it in. Each call takes the
// engine current at that moment and keeps it alive for its own duration,
// so nothing in flight is cut; an SMTP session's state lives in the front
// end, so a session that spans a reload simply meets the new rules at its
// next stage.
#pragma once

#include <memory>
#include <mutex>

#include "policy/decision_engine.h"

namespace relayguard {

class EngineHolder {
public:
    explicit EngineHolder(std::shared_ptr<DecisionEngine> engine) : engine_(std::move(engine)) {}
    std::shared_ptr<DecisionEngine> current() const {
        std::lock_guard lock(mutex_);
        return engine_;
    }
    // The old engine is released outside the lock: its last owner may be
    // this call, and tearing an engine down must not hold up the workers.
    void replace(std::shared_ptr<DecisionEngine> engine) {
        std::lock_guard lock(mutex_);
        engine_.swap(engine);
    }

private:
    // A mutex rather than std::atomic<std::shared_ptr>: GCC 12's lock-bit
    // implementation of the latter is reported as a race by ThreadSanitizer,
    // and an uncontended lock per SMTP stage costs nothing measurable.
    mutable std::mutex mutex_;
    std::shared_ptr<DecisionEngine> engine_;
};

}  // namespace relayguard
