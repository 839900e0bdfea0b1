// The queue commands (list, show, flush, delete, bounce), shared by
// `relayguard-relayd queue ...` and the relay client's admin socket (and so
// `relayguardctl queue ...`). They work on the queue directory itself, like
// postqueue/postsuper: a running daemon sees each change at its next scan.
// Every message that leaves the queue here is a log line with its id.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "delivery/delivery_settings.h"

namespace relayguard {

class DestinationState;

struct QueueAnswer {
    bool ok = true;
    bool usage = false;   // the request itself was malformed
    std::string text;     // for people
    std::string error;    // when !ok
    nlohmann::json data = nlohmann::json::object();  // for scripts
};

// Why a message's last attempt deferred it, as the running daemon knows it
// ("" when it does not).
using DeferralReasons = std::function<std::string(const std::string& id)>;

// `destinations`: the rests that `queue flush` ends (the running daemon's,
// or the queue directory's file when relayd is not running).
QueueAnswer queue_request(const DeliverySettings& settings, const std::vector<std::string>& args,
                          DestinationState& destinations, const DeferralReasons& reasons = {});

}  // namespace relayguard
