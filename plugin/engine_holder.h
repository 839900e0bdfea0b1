// The decision engine in force, replaceable while the daemon runs: a reload
// builds a new engine from the new settings over the same counter store,
// clock, POP windows and resolver, and swaps it in. Each call takes the
// engine current at that moment and keeps it alive for its own duration,
// so nothing in flight is cut; an SMTP session's state lives in the front
// end, so a session that spans a reload simply meets the new rules at its
// next stage.
#pragma once

#include <atomic>
#include <memory>

#include "policy/decision_engine.h"

namespace relayguard {

class EngineHolder {
public:
    explicit EngineHolder(std::shared_ptr<DecisionEngine> engine) : engine_(std::move(engine)) {}
    std::shared_ptr<DecisionEngine> current() const { return engine_.load(); }
    void replace(std::shared_ptr<DecisionEngine> engine) { engine_.store(std::move(engine)); }

private:
    std::atomic<std::shared_ptr<DecisionEngine>> engine_;
};

}  // namespace relayguard
