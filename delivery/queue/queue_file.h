// One queued message on disk: envelope and content in one file, written to
// tmp/, fsynced, renamed into active/ and the directory fsynced, so a message
// is either wholly queued or not at all. The file ends with an END record: a
// file without it (a torn write, a disk that lied) is never delivered. Each
// recipient's state is one byte at a known offset, rewritten in place and
// fsynced when it is delivered or fails, so a crash re-sends only the rest.
// The file's mtime is the time of the next delivery attempt: it survives a
// restart without a second file.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/base/clock.h"
#include "common/base/durable_file.h"

namespace relayguard {

enum class RecipientState : char { pending = 'P', delivered = 'D', failed = 'F' };

struct QueuedRecipient {
    std::string address;
    RecipientState state = RecipientState::pending;
    off_t state_offset = 0;  // where the state byte lives in the file
    // RFC 3461, as the client gave them: NOTIFY ("" = not given, the
    // default FAILURE,DELAY) and ORCPT ("rfc822;xtext").
    std::string notify;
    std::string orcpt;
};

struct QueuedMessage {
    std::string id;
    TimePoint arrival{};
    std::string sender;  // "" for the null sender
    std::vector<QueuedRecipient> recipients;
    std::string content;  // empty when read without it
    std::uint64_t size = 0;
    std::string ret;    // RFC 3461 RET: "FULL", "HDRS" or ""
    std::string envid;  // RFC 3461 ENVID, xtext as given
    // The delay warning went out; one byte rewritten in place, like a
    // recipient's state.
    bool warned = false;
    off_t warned_offset = 0;
    // Who submitted it with relayguard-sendmail (the real uid), for the log;
    // none for mail taken over SMTP.
    std::optional<std::uint32_t> submitter_uid;
};

// True when this recipient's NOTIFY asks for a report of `event`
// ("SUCCESS", "FAILURE" or "DELAY"); without NOTIFY, failures and delays.
bool notify_wants(const QueuedRecipient& recipient, std::string_view event);

// A queue id: the arrival time in hex and a random tail, so ids sort by age.
std::string new_queue_id(TimePoint now);

// True when an address can be stored: no line breaks, no NUL, not too long.
bool storable_address(std::string_view address);

// Writes the message durably under `queue_dir`/active/<id> (via tmp/).
Result<std::string> write_queue_file(const std::string& queue_dir, const QueuedMessage& message);
// Writes the message durably as `queue_dir`/incoming/<id> (via a dot name in
// incoming/), mode 0640: how relayguard-sendmail submits, as a member of the
// queue's group; the relay client picks it up (Queue::pickup).
Result<std::string> drop_into_incoming(const std::string& queue_dir, const QueuedMessage& message);

// Reads and checks a queue file; a failure names what is wrong with it.
Result<QueuedMessage> read_queue_file(const std::string& path, bool with_content);

// Rewrites one recipient's state byte and fsyncs the file.
bool mark_recipient(const std::string& path, const QueuedRecipient& recipient, RecipientState state);

// Records that the delay warning was sent, and fsyncs the file.
bool mark_warned(const std::string& path, const QueuedMessage& message);

}  // namespace relayguard
