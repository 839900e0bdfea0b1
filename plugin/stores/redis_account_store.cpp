// Account state in Redis; see the header and redis_scripts.h.
#include "plugin/stores/redis_account_store.h"

#include "plugin/stores/redis_scripts.h"
#include "plugin/stores/redis_time.h"

namespace relayguard {

namespace {

const RedisScript networks_script(redis_scripts::account_networks);
const RedisScript mark_script(redis_scripts::mark_compromised);
const RedisScript read_mark_script(redis_scripts::compromised_mark);
const RedisScript add_held_script(redis_scripts::add_held);

using redis_time::at_ms;
using redis_time::ms;

}  // namespace

std::optional<AccountOutcome> RedisAccountStore::record_login(const std::string& user, const std::string& network,
                                                              Duration window, std::uint32_t max_kept,
                                                              TimePoint now) {
    auto reply = redis_.run(networks_script, {key(user, "acct-logins")},
                            {ms(now), ms(window), std::to_string(max_kept), network});
    if (!reply || reply->type != RedisValue::Type::array || reply->elements.size() != 2) return std::nullopt;
    return AccountOutcome{static_cast<std::uint32_t>(reply->elements[0].integer), reply->elements[1].integer == 1};
}

std::optional<std::map<std::string, TimePoint>> RedisAccountStore::login_networks(const std::string& user,
                                                                                  Duration window, TimePoint now) {
    std::string k = key(user, "acct-logins");
    auto reply = redis_.command({"ZRANGEBYSCORE", k, "(" + ms(now - window), "+inf", "WITHSCORES"}, k);
    if (!reply || reply->type != RedisValue::Type::array) return std::nullopt;
    std::map<std::string, TimePoint> out;
    for (std::size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
        out.emplace(reply->elements[i].str, at_ms(reply->elements[i + 1].str));
    }
    return out;
}

Result<bool> RedisAccountStore::mark_compromised(const std::string& user, const std::string& reason, TimePoint now) {
    auto reply = redis_.run(mark_script, {key(user, "acct-compromised")}, {ms(now), reason});
    if (!reply) return Result<bool>::failure(reply.error());
    if (reply->type != RedisValue::Type::integer) return Result<bool>::failure("unexpected reply marking an account");
    return reply->integer == 1;
}

Lookup<CompromisedMark> RedisAccountStore::read_mark(const std::string& user, const char* how) {
    auto reply = redis_.run(read_mark_script, {key(user, "acct-compromised"), key(user, "acct-held"), key(user, "acct-logins")}, {how});
    if (!reply) return Lookup<CompromisedMark>::failure(reply.error());
    if (reply->type != RedisValue::Type::array) return Lookup<CompromisedMark>::failure("unexpected reply");
    if (reply->elements.size() < 3) return std::optional<CompromisedMark>{};
    CompromisedMark mark{at_ms(reply->elements[0].str), reply->elements[1].str, {}};
    for (const auto& id : reply->elements[2].elements) mark.held.push_back(id.str);
    return std::optional<CompromisedMark>(std::move(mark));
}

Lookup<CompromisedMark> RedisAccountStore::compromised(const std::string& user, bool with_held) {
    return read_mark(user, with_held ? "read" : "brief");
}

Lookup<CompromisedMark> RedisAccountStore::clear_compromised(const std::string& user) {
    return read_mark(user, "clear");
}

bool RedisAccountStore::add_held(const std::string& user, const std::string& queue_id, TimePoint now) {
    auto reply = redis_.run(add_held_script, {key(user, "acct-compromised"), key(user, "acct-held")},
                            {ms(now), queue_id, std::to_string(max_held)});
    return reply && reply->type == RedisValue::Type::integer && reply->integer == 1;
}

}  // namespace relayguard
