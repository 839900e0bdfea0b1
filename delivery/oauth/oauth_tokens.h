// The relay client's OAuth2 access tokens for its smart host (delivery.auth
// = "oauth2"): one cached until shortly before it ends, a new one from the
// token endpoint when needed (the refresh-token grant for a mailbox, or the
// client-credentials grant for an app), a rotated refresh token written to
// the token store before it is used, and the device-code login
// (`relayguardctl oauth login`) that gets the first refresh token without a
// browser on the server.
//
// Failures defer mail, never bounce it. The admin is told once per outage
// (an "alert:" line, as the relay client tells of withheld credentials) and
// once when it ends: a refused refresh token (invalid_grant) needs a human
// and is not asked again until a login or a new store; an unreachable or
// lying endpoint is asked again after a pause, not by every delivery thread
// in turn. A refresh token unused for delivery.oauth2.idle_refresh is used
// anyway, so a quiet server's token does not lapse for lack of use.
// Tokens are never logged.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/base/clock.h"
#include "common/base/result.h"
#include "delivery/delivery_settings.h"
#include "delivery/oauth/token_endpoint.h"
#include "delivery/oauth/token_response.h"
#include "delivery/oauth/token_store.h"

namespace relayguard {

// What `relayguardctl oauth status` shows.
struct OAuthStatus {
    bool configured = false;  // delivery.auth = "oauth2"
    std::string account, scope, grant, token_store;
    bool has_refresh_token = false;
    TimePoint access_expires{}, authorised_at{}, refreshed_at{};
    std::string problem;       // the outage going on, "" when none
    TimePoint problem_since{};
    bool needs_login = false;  // only a human can end the outage
    // The device login under way or last ended: "", "waiting", "authorised", "failed".
    std::string login;
    std::string login_error, user_code, verification_uri, verification_uri_complete;
    TimePoint login_expires{};
};

class OAuthTokens {
public:
    using SettingsSource = std::function<std::shared_ptr<const DeliverySettings>()>;
    OAuthTokens(SettingsSource settings, TokenEndpoint& endpoint, const Clock& clock);
    ~OAuthTokens();
    OAuthTokens(const OAuthTokens&) = delete;
    OAuthTokens& operator=(const OAuthTokens&) = delete;

    // Reads the token store and starts the thread that polls a device login
    // and refreshes an idle refresh token. After privileges are dropped.
    void start();
    void stop();

    // An access token good for at least refresh_margin, or why there is none
    // (words for the deferral).
    Result<std::string> access_token();
    // The smart host refused `token` (535/454): the next attempt gets a new one.
    void refused(const std::string& token);

    // One step of the background work: the device login's poll when one is
    // due, else the idle refresh token's renewal when due. Answers when it
    // wants to run again. (The thread calls it; tests call it by hand.)
    SteadyTime maintain();

    // Asks the device authorisation endpoint for a code; the login then
    // completes in the background once the admin approves it.
    Result<DeviceAuthorization> start_login();
    OAuthStatus status() const;

    struct Counts {
        std::atomic<std::uint64_t> refreshed{0}, refresh_failed{0};
    };
    const Counts& counts() const { return counts_; }
    bool in_outage() const;

private:
    struct Login {
        DeviceAuthorization device;
        SteadyTime next_poll{}, expires{};
        TimePoint expires_wall{};
        std::string state;  // waiting, authorised, failed
        std::string error;
    };
    // Each answers with `call_` held (one exchange with the endpoint at a time).
    void load_store();
    Result<std::string> renew(const DeliverySettings& s, const std::string& why);
    void poll_login(const DeliverySettings& s);
    // Takes a grant into the store; `login` marks a fresh authorisation.
    void take_grant(const DeliverySettings& s, const TokenGrant& g, bool login);
    // Starts (or goes on with) an outage; the first of one is an alert.
    void outage(const std::string& problem, bool needs_login);
    void outage_over(const std::string& how);
    FormFields client_fields(const DeliverySettings& s) const;
    // An access token in hand that lasts beyond the refresh margin.
    bool usable(const StoredTokens& t, const DeliverySettings& s) const;

    SettingsSource settings_;
    TokenEndpoint& endpoint_;
    const Clock& clock_;
    std::mutex call_;  // held through an exchange with the endpoint; taken before state_mutex_
    mutable std::mutex state_mutex_;  // held briefly; guards what follows
    bool loaded_ = false;
    std::optional<StoredTokens> tokens_;
    std::string problem_;
    TimePoint problem_since_{};
    bool needs_login_ = false;
    std::string refused_refresh_token_;  // the one invalid_grant named
    std::string refused_settings_;       // the application settings the provider refused
    SteadyTime pause_until_{};           // no call to the endpoint before this, after a failure
    SteadyTime issued_{};                // when the access token in hand was issued
    bool store_failing_ = false;         // the last write of the token store failed
    std::optional<Login> login_;
    Counts counts_;

    std::mutex wake_mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool kicked_ = false;  // a login started: poll it without waiting out the idle wait
    std::thread thread_;
};

}  // namespace relayguard
