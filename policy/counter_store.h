// The port through which the engine keeps per-client counters: in memory on
// one node, in Redis for a cluster. Each call is one atomic step (one round
// trip on Redis), so a check and its update can never race between nodes.
// A call answers std::nullopt when the store cannot be reached; the engine
// then applies the configured fail mode.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/base/clock.h"
#include "common/base/result.h"

namespace relayguard {

// What a client guesses at, to be blocked for: mailboxes (directory
// harvest) or passwords (brute force). Each kind is counted apart; a block
// is one per client and names the kind that set it.
enum class GuessKind { unknown_recipient, failed_login };

// The rule a block of this kind refuses under.
inline const char* block_rule(GuessKind kind) {
    return kind == GuessKind::failed_login ? "auth_failures" : "unknown_recipients";
}

struct ConnectionOutcome {
    bool admitted = false;                  // a slot was taken for this connection
    std::uint32_t held = 0;                 // slots this client holds, this one included if admitted
    std::optional<TimePoint> blocked_until; // an active block
    GuessKind blocked_for = GuessKind::unknown_recipient;  // what set it
};

struct RateOutcome {
    std::uint32_t count = 0;  // messages in the window before this call, those in flight included
    bool recorded = false;    // whether this call added one (or reserved one)
};

struct GuessOutcome {
    std::uint32_t distinct = 0;             // distinct guesses of this kind in the window
    std::optional<TimePoint> blocked_until; // set when this or an earlier call blocked the client
};

struct AccountOutcome {
    std::uint32_t networks = 0;  // distinct client networks the account failed from in the window
    bool new_network = false;    // this call added one
};

struct ClientBlock {
    TimePoint until;
    GuessKind kind = GuessKind::unknown_recipient;
};

// The windows `inspect` counts in, one a counter.
struct CounterWindows {
    Duration message_rate;
    Duration unknown_recipients;
    Duration failed_logins;
};

// What a store holds for one client, read without changing anything.
struct ClientCounters {
    std::uint32_t messages = 0;            // in the message-rate window
    std::uint32_t messages_in_flight = 0;  // reserved at MAIL, not yet ended
    std::uint32_t connections = 0;         // held now (cluster-wide on Redis)
    std::uint32_t unknown_recipients = 0;  // distinct, in the harvest window
    std::uint32_t failed_logins = 0;       // distinct, in the brute-force window
    std::optional<TimePoint> blocked_until;
    GuessKind blocked_for = GuessKind::unknown_recipient;
    // When the oldest entry of each windowed count was made: the count
    // drops by one when it is a window old (none: the count is 0).
    std::optional<TimePoint> oldest_message, oldest_unknown_recipient, oldest_failed_login;
};

class CounterStore {
public:
    virtual ~CounterStore() = default;

    // Takes a connection slot for `connection_id` unless the client already
    // holds `limit` (0: no limit), and reports any harvest block.
    virtual std::optional<ConnectionOutcome> open_connection(const std::string& client, const std::string& connection_id,
                                                             std::uint32_t limit, TimePoint now) = 0;
    virtual void close_connection(const std::string& client, const std::string& connection_id) = 0;

    // Messages in (now - window, now], plus the messages in flight (reserved
    // and not yet ended). With `record`, adds one at `now` if that total is
    // below `limit`; a refused attempt is never counted.
    virtual std::optional<RateOutcome> message_rate(const std::string& client, Duration window, std::uint32_t limit,
                                                    bool record, TimePoint now) = 0;
    // Counts one message unconditionally (for limits counting accepted mail).
    virtual std::optional<RateOutcome> record_message(const std::string& client, Duration window, std::uint32_t limit,
                                                      TimePoint now) = 0;

    // Exact limits for mail counted when accepted: at MAIL FROM a message
    // takes a slot `reservation` if the counted and in-flight messages are
    // fewer than `limit`, in the same atomic step as the check, so parallel
    // transactions can never all pass the check of one free slot. The slot
    // is then either committed (end of data: it becomes a counted message at
    // `now`) or released (abort, RSET, refusal, lost connection). A slot its
    // node never ends (the node died) expires: see each store. Commit and
    // release never wait for a server; a commit whose slot has expired still
    // counts the message, and one with an empty name just counts one.
    virtual std::optional<RateOutcome> reserve_message(const std::string& client, const std::string& reservation,
                                                       Duration window, std::uint32_t limit, TimePoint now) = 0;
    virtual void commit_message(const std::string& client, const std::string& reservation, Duration window,
                                std::uint32_t limit, TimePoint now) = 0;
    virtual void release_message(const std::string& client, const std::string& reservation) = 0;

    // Adds a distinct guess of `kind` (an unknown recipient; a failed
    // login, named by user and password so a retry of one wrong password is
    // one guess); when `threshold` distinct ones are seen within `window`
    // and `block_for` is positive, blocks the client, unless it already is.
    virtual std::optional<GuessOutcome> record_guess(GuessKind kind, const std::string& client,
                                                     const std::string& guess, Duration window,
                                                     std::uint32_t threshold, Duration block_for, TimePoint now) = 0;
    std::optional<GuessOutcome> record_unknown_recipient(const std::string& client, const std::string& recipient,
                                                         Duration window, std::uint32_t threshold, Duration block_for,
                                                         TimePoint now) {
        return record_guess(GuessKind::unknown_recipient, client, recipient, window, threshold, block_for, now);
    }
    virtual Lookup<ClientBlock> block(const std::string& client, TimePoint now) = 0;
    Lookup<TimePoint> blocked_until(const std::string& client, TimePoint now) {
        auto b = block(client, now);
        if (!b) return Lookup<TimePoint>::failure(b.error());
        if (!*b) return std::optional<TimePoint>{};
        return std::optional<TimePoint>((*b)->until);
    }
    // Lifts a block and forgets the guesses of both kinds (admin command).
    virtual bool unblock(const std::string& client) = 0;
    // Forgets the messages counted under `client` (admin command: an
    // account's quota overrun, when its compromised mark is lifted).
    virtual void forget_messages(const std::string& client) = 0;

    // A failed login for `user` from the client network `network`: answers
    // how many distinct networks failed for that user within `window`
    // (at most `max_kept` are kept), so a password guessed from many
    // addresses is seen although no one address reaches its limit.
    virtual std::optional<AccountOutcome> record_account_failure(const std::string& user, const std::string& network,
                                                                Duration window, std::uint32_t max_kept,
                                                                TimePoint now) = 0;
    // A failed AUTH from `address` bars its trusted groups until `until`
    // (relay.auth_failure_window); false when the store cannot take it.
    virtual bool mark_failed_auth(const std::string& address, TimePoint until, TimePoint now) = 0;
    virtual Lookup<TimePoint> failed_auth_until(const std::string& address, TimePoint now) = 0;

    // Every counter of the client, for `relayguardctl ip show`.
    virtual std::optional<ClientCounters> inspect(const std::string& client, const CounterWindows& windows,
                                                  TimePoint now) = 0;
};

}  // namespace relayguard
