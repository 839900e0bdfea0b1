// The Lua scripts behind the Redis counter store. Each reads, checks and
// updates one client's counters atomically on the server, so two nodes can
// never both take the last slot of a limit. Every key a script touches shares
// the client's hash tag, so on Redis Cluster they live in one slot.
//
// Times are milliseconds since the epoch, passed in by the calling node: the
// engine's clock, not the server's, decides, as it does in memory. Every key
// gets a TTL, so a client that goes quiet leaves nothing behind.
#pragma once

namespace relayguard::redis_scripts {

// KEYS: messages (sorted set: a counted message is a member scored with its
//       time, > 0; a message in flight is a member "p/..." scored with minus
//       its lease end, < 0, so that each kind is one score range and no call
//       has to look at the members one by one)
// ARGV: now, window, limit, mode ("check", "record-below-limit", "record",
//       "reserve"), member, lease end, the number R of reservations this node
//       released and has not yet removed, those R members, then triples
//       (member in flight, member counted, time counted) of reservations it
//       committed and has not yet moved.
// The node's own releases and commits go first, so this node never counts a
// slot it has already given back or counted. One key, not two: on a Cluster
// slot being migrated, Redis refuses a script on several keys that are not
// all there yet (TRYAGAIN), and a new client's keys never are. Returns
// {counted + in flight before this call, 1 if recorded or reserved}.
inline constexpr const char* message_rate = R"lua(
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local mode, member, lease_end = ARGV[4], ARGV[5], tonumber(ARGV[6])
local released = tonumber(ARGV[7])
local key = KEYS[1]
local added = false
if released > 0 then redis.call('ZREM', key, unpack(ARGV, 8, 7 + released)) end
for i = 8 + released, #ARGV - 2, 3 do
  redis.call('ZADD', key, ARGV[i + 2], ARGV[i + 1])
  redis.call('ZREM', key, ARGV[i])
  added = true
end
-- Counted messages older than the window; messages in flight whose lease
-- has ended (their node died).
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
redis.call('ZREMRANGEBYSCORE', key, -now, '(0')
local count = redis.call('ZCARD', key)
local recorded = 0
if mode == 'record' or (mode == 'record-below-limit' and count < limit) then
  redis.call('ZADD', key, now, member)
  added = true
  recorded = 1
elseif mode == 'reserve' and count < limit then
  redis.call('ZADD', key, -lease_end, member)
  added = true
  recorded = 1
end
if added then
  -- Only the newest `limit` counted messages can decide. Those in flight
  -- rank first (negative scores), the oldest counted right after them.
  local in_flight = redis.call('ZCOUNT', key, '-inf', '(0')
  local extra = redis.call('ZCARD', key) - in_flight - math.max(limit, 1)
  if extra > 0 then redis.call('ZREMRANGEBYRANK', key, in_flight, in_flight + extra - 1) end
  redis.call('PEXPIRE', key, math.max(window, lease_end - now))
end
return {count, recorded}
)lua";

// A block is two keys with one expiry: the block holds its end (ms), as it
// always has, so nodes of an earlier release still read it; the block's
// kind key holds what set it (0 unknown recipients, 1 failed logins; absent
// is 0).
// KEYS: connections (sorted set, member per connection, score = lease end), block, block kind
// ARGV: now, lease, limit (0: none), member, then members this node closed
// and has not yet removed (they go first, so their slots are free again)
// Returns {admitted, held}. One key: on a Cluster slot being migrated a
// script on several keys fails (TRYAGAIN) until they are all moved; the
// block is read apart, by the store. A connection
// whose node stopped refreshing it drops out when its lease ends.
inline constexpr const char* open_connection = R"lua(
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if #ARGV > 4 then redis.call('ZREM', KEYS[1], unpack(ARGV, 5)) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local admitted = 0
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or limit == 0 or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], lease)
  admitted = 1
end
return {admitted, redis.call('ZCARD', KEYS[1])}
)lua";

// KEYS: connections, or messages. ARGV: now, lease end, "connections" or
// "in-flight" (scored with minus the lease end: see message_rate), member...
// Extends the leases of connections (reservations) still held; one already
// closed (or expired) is not brought back.
inline constexpr const char* refresh_connections = R"lua(
local now, lease_end = tonumber(ARGV[1]), tonumber(ARGV[2])
local score = lease_end
if ARGV[3] == 'in-flight' then score = -lease_end end
local n = 0
for i = 4, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', score, ARGV[i])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl < lease_end - now then redis.call('PEXPIRE', KEYS[1], lease_end - now) end
return n
)lua";

// KEYS: guesses of one kind (sorted set, score = last seen), block, block kind
// ARGV: now, window, threshold, block_for, guess, channel, client, kind
// Returns {distinct, blocked_until or 0, block kind}. A new block clears
// the count, so the client starts afresh when it ends, and is published on
// `channel` ("<until> <client>", as earlier releases publish and read it;
// a node learns the kind from the keys: shared_blocks.h). At most
// `threshold` guesses are kept.
inline constexpr const char* record_guess = R"lua(
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local threshold, block_for = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[5]) or redis.call('ZCARD', KEYS[1]) < math.max(threshold, 1) then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
end
local distinct = redis.call('ZCARD', KEYS[1])
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
local kind = tonumber(redis.call('GET', KEYS[3]) or '0')
if threshold > 0 and distinct >= threshold and block_for > 0 and blocked <= now then
  blocked, kind = now + block_for, tonumber(ARGV[8])
  redis.call('SET', KEYS[2], blocked, 'PX', block_for)
  redis.call('SET', KEYS[3], kind, 'PX', block_for)
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[6], blocked .. ' ' .. ARGV[7])
else
  redis.call('PEXPIRE', KEYS[1], window)
end
if blocked <= now then blocked = 0 end
return {distinct, blocked, kind}
)lua";

// KEYS: block, unknown recipients, failed logins, block kind. ARGV: channel, client
// Returns 1 if a block was lifted; the lift is published.
inline constexpr const char* unblock = R"lua(
local was = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('PUBLISH', ARGV[1], '0 ' .. ARGV[2])
return was
)lua";

// KEYS: messages, connections, unknown recipients, block, failed logins, block kind
// ARGV: now, rate window, unknown window, failed-login window
// Returns {messages, connections, unknown, blocked_until or 0, in flight,
// failed logins, block kind, and the oldest message, unknown recipient and
// failed login in their windows (0: none)}; changes nothing.
inline constexpr const char* inspect = R"lua(
local now = tonumber(ARGV[1])
local function oldest(key, from)
  local first = redis.call('ZRANGEBYSCORE', key, '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return tonumber(first[2] or '0')
end
local rate_from = now - tonumber(ARGV[2])
local unknown_from = now - tonumber(ARGV[3])
local logins_from = now - tonumber(ARGV[4])
local messages = redis.call('ZCOUNT', KEYS[1], '(' .. rate_from, '+inf')
local in_flight = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. -now)
local connections = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local unknown = redis.call('ZCOUNT', KEYS[3], '(' .. unknown_from, '+inf')
local logins = redis.call('ZCOUNT', KEYS[5], '(' .. logins_from, '+inf')
local blocked = tonumber(redis.call('GET', KEYS[4]) or '0')
if blocked <= now then blocked = 0 end
local kind = tonumber(redis.call('GET', KEYS[6]) or '0')
return {messages, connections, unknown, blocked, in_flight, logins, kind,
        oldest(KEYS[1], rate_from), oldest(KEYS[3], unknown_from), oldest(KEYS[5], logins_from)}
)lua";

// KEYS: one account's failed (or successful) logins (sorted set: client
// network, score = last seen). ARGV: now, window, most kept, network
// Returns {distinct networks within the window, 1 if this one is new}.
inline constexpr const char* account_networks = R"lua(
local now, window, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local added = 0
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or redis.call('ZCARD', KEYS[1]) < math.max(most, 1) then
  added = redis.call('ZADD', KEYS[1], now, ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], window)
return {redis.call('ZCARD', KEYS[1]), added}
)lua";

// KEYS: an account's compromised mark (hash: since, reason). ARGV: now, reason
// Returns 1 when it was set now, 0 when the account was already marked.
inline constexpr const char* mark_compromised = R"lua(
if redis.call('HSETNX', KEYS[1], 'since', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'reason', ARGV[2])
return 1
)lua";

// KEYS: the mark, the held queue ids (sorted set, score = when held), the
// login networks. ARGV: "brief" (no ids), "read", or "clear" (read, then
// delete all three). Returns {} when not marked, else {since, reason,
// {queue ids...}}.
inline constexpr const char* compromised_mark = R"lua(
local m = redis.call('HMGET', KEYS[1], 'since', 'reason')
if not m[1] then return {} end
local held = {}
if ARGV[1] ~= 'brief' then held = redis.call('ZRANGE', KEYS[2], 0, -1) end
if ARGV[1] == 'clear' then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return {m[1], m[2] or '', held}
)lua";

// KEYS: the mark, the held queue ids. ARGV: now, queue id, most kept
// Notes the id only while the account is marked and has room; returns 1
// when it is noted (or was already).
inline constexpr const char* add_held = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
)lua";

// KEYS: POP-before-SMTP window (hash: user, until). ARGV: until, user, now
// Opens or extends the window; never shortens one.
inline constexpr const char* grant_pop_window = R"lua(
local window_end, now = tonumber(ARGV[1]), tonumber(ARGV[3])
if window_end <= now then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if current >= window_end then return 1 end
redis.call('HSET', KEYS[1], 'until', window_end, 'user', ARGV[2])
redis.call('PEXPIRE', KEYS[1], window_end - now)
return 1
)lua";

}  // namespace relayguard::redis_scripts
