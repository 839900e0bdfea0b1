// The milter front end: libmilter callbacks turned into engine calls, and
// engine decisions turned back into milter replies. libmilter keeps global
// state and runs one thread per MTA connection, so this is a set of free
// functions around one engine, not an object per connection.
#pragma once

#include <string>

#include "common/base/result.h"
#include "plugin/frontends/listen_settings.h"
#include "plugin/ops/engine_holder.h"
#include "plugin/frontends/transaction_ledger.h"

namespace relayguard::milter {

// Registers the callbacks and binds the socket, or says why it cannot.
// `ledger` is shared with the policy service, so a message both report is
// counted once.
Status open(EngineHolder& engine, TransactionLedger& ledger, const ListenSettings& settings);
// Serves until stop() (or libmilter's own signal handling) ends it.
// Answers libmilter's exit status.
int run();
void stop();
// After run() returned: waits until every session's close has run (at most
// `limit`); false when some are still open.
bool wait_for_sessions(std::chrono::milliseconds limit);

}  // namespace relayguard::milter
