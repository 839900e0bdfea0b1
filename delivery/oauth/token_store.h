// The relay client's OAuth2 tokens on disk: the refresh token (what lets it
// get access tokens without a human) and the last access token, so a
// restart neither needs the admin nor a call to the provider. Written like
// a queue file (a temporary file, fsync, rename, fsync of the directory):
// a provider that rotates the refresh token invalidates the old one, so a
// crash must leave either the old file or the new, never neither. Mode
// 0600; a store others can read is refused, as ssh refuses such a key.
#pragma once

#include <string>

#include "common/base/clock.h"
#include "common/base/result.h"

namespace relayguard {

struct StoredTokens {
    std::string account;        // the mailbox they are for ("" for app-only)
    std::string scope;          // as granted
    std::string refresh_token;  // "" for the client-credentials grant
    std::string access_token;
    TimePoint access_expires{};
    TimePoint authorised_at{};  // the device login (or the first grant)
    TimePoint refreshed_at{};   // the refresh token's last use
};

// std::nullopt when there is no store yet.
Lookup<StoredTokens> read_token_store(const std::string& path);
Status write_token_store(const std::string& path, const StoredTokens& tokens);

}  // namespace relayguard
