// OAuth2 access tokens for the smart host; see the header.
#include "delivery/oauth/oauth_tokens.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace relayguard {

namespace {

// After a failed exchange the endpoint is left alone this long; the
// delivery threads defer with the last problem meanwhile.
constexpr auto pause_after_failure = std::chrono::seconds(30);
constexpr auto idle_wake = std::chrono::seconds(60);

// RFC 6749 5.2 errors after which asking again with the same credentials
// cannot help: a human must log in again or fix the application.
bool needs_human(const std::string& error) {
    return error == "invalid_grant" || error == "invalid_client" || error == "unauthorized_client" ||
           error == "invalid_scope";
}

// "https://login.example/tenant/token" -> "login.example": enough to say
// which endpoint failed, without a path that might carry an id.
std::string host_of(const std::string& url) {
    auto start = url.find("://");
    start = start == std::string::npos ? 0 : start + 3;
    return url.substr(start, url.find('/', start) - start);
}

// What a reload may change that could end a refusal by the provider.
std::string settings_key(const DeliverySettings& s) {
    const auto& o = s.oauth2;
    return o.token_endpoint + "\n" + o.client_id + "\n" + o.client_secret + "\n" + o.scope + "\n" +
           std::to_string(static_cast<int>(o.grant));
}

std::string seconds_text(std::chrono::milliseconds d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + " s";
}

}  // namespace

OAuthTokens::OAuthTokens(SettingsSource settings, TokenEndpoint& endpoint, const Clock& clock)
    : settings_(std::move(settings)), endpoint_(endpoint), clock_(clock) {}

OAuthTokens::~OAuthTokens() { stop(); }

void OAuthTokens::start() {
    {
        std::lock_guard call(call_);
        if (settings_()->auth == SmarthostAuth::oauth2) load_store();
    }
    thread_ = std::thread([this] {
        std::unique_lock lock(wake_mutex_);
        while (!stopping_) {
            lock.unlock();
            SteadyTime next = maintain();
            lock.lock();
            // The clock says when the next step is due; the wait itself is the
            // condition variable's, which stop() and start_login() cut short.
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_.steady_now());
            wake_.wait_for(lock, std::max(wait, std::chrono::milliseconds(100)), [this] { return stopping_ || kicked_; });
            kicked_ = false;
        }
    });
}

void OAuthTokens::stop() {
    {
        std::lock_guard lock(wake_mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void OAuthTokens::load_store() {
    auto s = settings_();
    auto read = read_token_store(s->oauth2.token_store);
    {
        std::lock_guard lock(state_mutex_);
        loaded_ = true;
        if (read) tokens_ = *read;
    }
    if (!read) outage("token store: " + read.error(), true);
}

FormFields OAuthTokens::client_fields(const DeliverySettings& s) const {
    FormFields f{{"client_id", s.oauth2.client_id}};
    // client_secret_post (RFC 6749 2.3.1): what Microsoft and Google take.
    if (!s.oauth2.client_secret.empty()) f.emplace_back("client_secret", s.oauth2.client_secret);
    return f;
}

void OAuthTokens::outage(const std::string& problem, bool human) {
    bool first;
    {
        std::lock_guard lock(state_mutex_);
        first = problem_.empty();
        if (first) problem_since_ = clock_.now();
        problem_ = problem;
        needs_login_ = human;
    }
    if (first) {
        // Once per outage, where grep and fail2ban find it, as the relay
        // client tells of withheld credentials.
        spdlog::error("alert: oauth2: no access token for the smart host: {}; mail is deferred {}", problem,
                      human ? "until an admin acts (relayguardctl oauth status)" : "and the endpoint asked again");
    } else {
        spdlog::warn("oauth2: {}", problem);
    }
}

void OAuthTokens::outage_over(const std::string& how) {
    bool was;
    {
        std::lock_guard lock(state_mutex_);
        was = !problem_.empty();
        problem_.clear();
        needs_login_ = false;
    }
    if (was) spdlog::info("alert over: oauth2: {}; deferred mail goes out at its next attempt", how);
}

Result<std::string> OAuthTokens::access_token() {
    using R = Result<std::string>;
    auto s = settings_();
    {
        // The common case needs no exchange: no wait behind one in progress.
        std::lock_guard lock(state_mutex_);
        if (loaded_ && !needs_login_ && tokens_ && usable(*tokens_, *s) &&
            (s->oauth2.grant == OAuthGrant::client_credentials || tokens_->account.empty() ||
             tokens_->account == s->username)) {
            return tokens_->access_token;
        }
    }
    std::lock_guard call(call_);
    if (!loaded_) load_store();
    bool human;
    std::string problem, refused, refused_settings;
    {
        std::lock_guard lock(state_mutex_);
        human = needs_login_;
        problem = problem_;
        refused = refused_refresh_token_;
        refused_settings = refused_settings_;
    }
    if (human) {
        // Only a human ends this: a login (which clears it itself), a store
        // put in place by hand holding a refresh token not yet refused, or
        // a reload that changed the application's settings.
        auto again = read_token_store(s->oauth2.token_store);
        // The app-only grant has no refresh token: only its settings can change.
        bool new_store = s->oauth2.grant == OAuthGrant::refresh_token && again && *again &&
                         !(*again)->refresh_token.empty() && (refused.empty() || (*again)->refresh_token != refused);
        bool new_settings = !refused_settings.empty() && settings_key(*s) != refused_settings;
        if (!new_store && !new_settings) return R::failure(problem);
        std::lock_guard lock(state_mutex_);
        if (again && *again) tokens_ = **again;
        needs_login_ = false;
        refused_settings_.clear();
    }
    std::optional<StoredTokens> held;
    {
        std::lock_guard lock(state_mutex_);
        held = tokens_;
    }
    bool delegated = s->oauth2.grant == OAuthGrant::refresh_token;
    if (delegated && held && !held->account.empty() && held->account != s->username) {
        std::string why = "the token store holds tokens for " + held->account + ", but delivery.username is " +
                          s->username + ": run relayguardctl oauth login";
        {
            // Until the store holds another refresh token (a login, or by hand).
            std::lock_guard lock(state_mutex_);
            refused_refresh_token_ = held->refresh_token;
        }
        outage(why, true);
        return R::failure(why);
    }
    if (held && usable(*held, *s)) return held->access_token;  // renewed while this waited for call_
    SteadyTime pause_until;
    {
        std::lock_guard lock(state_mutex_);
        pause_until = pause_until_;
        problem = problem_;
    }
    if (auto left = pause_until - clock_.steady_now(); left > std::chrono::seconds(0)) {
        std::string why = problem.empty() ? "the smart host refused a token just issued" : problem;
        return R::failure(why + " (the token endpoint is asked again in " +
                          seconds_text(std::chrono::duration_cast<std::chrono::milliseconds>(left)) + ")");
    }
    return renew(*s, held && !held->access_token.empty() ? "the access token ends soon" : "no access token yet");
}

bool OAuthTokens::usable(const StoredTokens& t, const DeliverySettings& s) const {
    return !t.access_token.empty() && clock_.now() + s.oauth2.refresh_margin < t.access_expires;
}

void OAuthTokens::refused(const std::string& token) {
    std::lock_guard lock(state_mutex_);
    if (!tokens_ || tokens_->access_token != token) return;
    tokens_->access_token.clear();
    tokens_->access_expires = TimePoint{};
    // A token refused within seconds of its issue (in the attempt that got
    // it) says the mailbox may not send, not that the token is spent: a new
    // one at every attempt would only rotate the refresh token and invite
    // the provider's throttling. One refused later is replaced at once.
    if (clock_.steady_now() - issued_ < std::chrono::seconds(10)) {
        pause_until_ = clock_.steady_now() + pause_after_failure;
    }
}

Result<std::string> OAuthTokens::renew(const DeliverySettings& s, const std::string& why) {
    using R = Result<std::string>;
    const auto& o = s.oauth2;
    bool delegated = o.grant == OAuthGrant::refresh_token;
    std::string refresh_token;
    {
        std::lock_guard lock(state_mutex_);
        if (tokens_) refresh_token = tokens_->refresh_token;
    }
    auto fail = [&](const std::string& what, bool human) {
        ++counts_.refresh_failed;
        {
            std::lock_guard lock(state_mutex_);
            pause_until_ = clock_.steady_now() + pause_after_failure;
        }
        outage(what, human);
        return R::failure(what);
    };
    FormFields form;
    if (delegated) {
        if (refresh_token.empty()) {
            return fail("no refresh token in " + o.token_store + " yet: run relayguardctl oauth login", true);
        }
        form = {{"grant_type", "refresh_token"}, {"refresh_token", refresh_token}};
    } else {
        form = {{"grant_type", "client_credentials"}};
    }
    for (auto& f : client_fields(s)) form.push_back(std::move(f));
    form.emplace_back("scope", o.scope);
    std::string where = "token endpoint " + host_of(o.token_endpoint);
    auto answer = endpoint_.post(o.token_endpoint, form, o.ca_file, o.timeout);
    if (!answer) return fail(where + ": " + answer.error(), false);
    auto parsed = parse_token_answer(answer->body, answer->content_type);
    if (!parsed) return fail(where + " answered HTTP " + std::to_string(answer->status) + ", but " + parsed.error(), false);
    if (!parsed->grant) {
        std::string what = where + " refused: " + parsed->error;
        if (!parsed->description.empty()) what += " (" + parsed->description.substr(0, 200) + ")";
        bool human = needs_human(parsed->error);
        if (human) {
            {
                std::lock_guard lock(state_mutex_);
                refused_refresh_token_ = refresh_token;
                refused_settings_ = settings_key(s);
            }
            what += delegated ? "; the refresh token is no longer good: run relayguardctl oauth login"
                              : "; check client_id, client_secret and the application's permissions";
        }
        return fail(what, human);
    }
    if (answer->status != 200) return fail(where + " answered HTTP " + std::to_string(answer->status), false);
    take_grant(s, *parsed->grant, false);
    ++counts_.refreshed;
    spdlog::info("oauth2: new access token for {} ({}), valid {} s{}", s.username, why, parsed->grant->expires_in.count(),
                 parsed->grant->refresh_token.empty() || parsed->grant->refresh_token == refresh_token
                     ? ""
                     : "; the refresh token was rotated and the new one stored");
    return parsed->grant->access_token;
}

void OAuthTokens::take_grant(const DeliverySettings& s, const TokenGrant& g, bool login) {
    auto now = clock_.now();
    StoredTokens next;
    {
        std::lock_guard lock(state_mutex_);
        if (tokens_ && !login) next = *tokens_;
    }
    if (login || next.authorised_at == TimePoint{}) next.authorised_at = now;
    next.account = s.username;
    if (!g.scope.empty()) next.scope = g.scope;
    else if (next.scope.empty()) next.scope = s.oauth2.scope;
    if (!g.refresh_token.empty()) next.refresh_token = g.refresh_token;  // rotated
    next.access_token = g.access_token;
    next.access_expires = now + g.expires_in;
    if (s.oauth2.grant == OAuthGrant::refresh_token) next.refreshed_at = now;
    // On disk before it is used: a provider that rotated the refresh token
    // has already voided the old one.
    auto written = write_token_store(s.oauth2.token_store, next);
    bool was_failing;
    {
        std::lock_guard lock(state_mutex_);
        was_failing = store_failing_;
        store_failing_ = !written;
        tokens_ = std::move(next);
        refused_refresh_token_.clear();
        refused_settings_.clear();
        pause_until_ = SteadyTime{};
        issued_ = clock_.steady_now();
    }
    if (!written && !was_failing) {  // once, until a write succeeds again
        spdlog::error("alert: oauth2: {}; after a crash or restart the token store may lack the new tokens, and a "
                      "rotated refresh token with them (then: relayguardctl oauth login)",
                      written.error());
    } else if (written && was_failing) {
        spdlog::info("alert over: oauth2: the token store {} is written again", s.oauth2.token_store);
    }
    outage_over("a new access token for " + s.username);
}

SteadyTime OAuthTokens::maintain() {
    auto s = settings_();
    std::lock_guard call(call_);
    if (s->auth != SmarthostAuth::oauth2) return clock_.steady_now() + idle_wake;
    if (!loaded_) load_store();
    std::optional<SteadyTime> poll_at;
    {
        std::lock_guard lock(state_mutex_);
        if (login_ && login_->state == "waiting") poll_at = login_->next_poll;
    }
    if (poll_at) {
        if (clock_.steady_now() >= *poll_at) poll_login(*s);
        std::lock_guard lock(state_mutex_);
        if (login_ && login_->state == "waiting") return login_->next_poll;
        return clock_.steady_now() + idle_wake;
    }
    // A refresh token unused for long lapses at some providers (Microsoft:
    // 90 days without use): use it before it does.
    bool due;
    TimePoint last_use{};
    {
        std::lock_guard lock(state_mutex_);
        due = s->oauth2.grant == OAuthGrant::refresh_token && !needs_login_ && tokens_ &&
              !tokens_->refresh_token.empty() && clock_.now() - tokens_->refreshed_at >= s->oauth2.idle_refresh &&
              clock_.steady_now() >= pause_until_;
        if (tokens_) last_use = tokens_->refreshed_at;
    }
    if (due) {
        (void)renew(*s, "the refresh token was unused for " + seconds_text(clock_.now() - last_use));
    }
    return clock_.steady_now() + idle_wake;
}

void OAuthTokens::poll_login(const DeliverySettings& s) {
    Login l;
    {
        std::lock_guard lock(state_mutex_);
        l = *login_;
    }
    auto set = [&](const std::function<void(Login&)>& change) {
        std::lock_guard lock(state_mutex_);
        if (login_) change(*login_);
    };
    auto now = clock_.steady_now();
    if (now >= l.expires) {
        set([](Login& x) {
            x.state = "failed";
            x.error = "the code expired before it was approved";
        });
        spdlog::warn("oauth2: device login for {}: the code expired before it was approved", s.username);
        return;
    }
    FormFields form{{"grant_type", "urn:ietf:params:oauth:grant-type:device_code"}, {"device_code", l.device.device_code}};
    for (auto& f : client_fields(s)) form.push_back(std::move(f));
    auto answer = endpoint_.post(s.oauth2.token_endpoint, form, s.oauth2.ca_file, s.oauth2.timeout);
    auto next = now + l.device.interval;
    if (!answer) {
        // RFC 8628 3.5: back off on a connection timeout (doubling, at most a minute).
        spdlog::warn("oauth2: device login: token endpoint {}: {}", host_of(s.oauth2.token_endpoint), answer.error());
        set([&](Login& x) {
            x.device.interval = std::min(x.device.interval * 2, std::chrono::seconds(60));
            x.next_poll = now + x.device.interval;
        });
        return;
    }
    auto parsed = parse_token_answer(answer->body, answer->content_type);
    if (!parsed) {
        spdlog::warn("oauth2: device login: token endpoint {} answered HTTP {}, but {}", host_of(s.oauth2.token_endpoint),
                     answer->status, parsed.error());
        set([&](Login& x) { x.next_poll = next; });
        return;
    }
    if (!parsed->grant) {
        const auto& e = parsed->error;
        if (e == "authorization_pending") {
            set([&](Login& x) { x.next_poll = next; });
        } else if (e == "slow_down") {  // RFC 8628 3.5: 5 s more from now on
            set([&](Login& x) {
                x.device.interval += std::chrono::seconds(5);
                x.next_poll = now + x.device.interval;
            });
        } else {
            std::string why = e + (parsed->description.empty() ? "" : " (" + parsed->description.substr(0, 200) + ")");
            set([&](Login& x) {
                x.state = "failed";
                x.error = why;
            });
            spdlog::warn("oauth2: device login for {} failed: {}", s.username, why);
        }
        return;
    }
    if (answer->status != 200) {
        spdlog::warn("oauth2: device login: token endpoint {} sent a grant with HTTP {}; not taken",
                     host_of(s.oauth2.token_endpoint), answer->status);
        set([&](Login& x) { x.next_poll = next; });
        return;
    }
    take_grant(s, *parsed->grant, true);
    set([](Login& x) { x.state = "authorised"; });
    spdlog::info("oauth2: device login approved: tokens for {} stored in {}", s.username, s.oauth2.token_store);
}

Result<DeviceAuthorization> OAuthTokens::start_login() {
    using R = Result<DeviceAuthorization>;
    auto s = settings_();
    const auto& o = s->oauth2;
    if (s->auth != SmarthostAuth::oauth2) return R::failure("delivery.auth is not \"oauth2\"");
    if (o.grant == OAuthGrant::client_credentials) {
        return R::failure("delivery.oauth2.grant is client_credentials: the application's secret is its authorisation, "
                          "no login is needed");
    }
    if (o.device_endpoint.empty()) return R::failure("no delivery.oauth2.device_endpoint to log in through");
    std::lock_guard call(call_);
    auto answer = endpoint_.post(o.device_endpoint, {{"client_id", o.client_id}, {"scope", o.scope}}, o.ca_file, o.timeout);
    std::string where = "device endpoint " + host_of(o.device_endpoint);
    if (!answer) return R::failure(where + ": " + answer.error());
    auto device = parse_device_authorization(answer->body, answer->content_type);
    if (!device) return R::failure(where + " answered HTTP " + std::to_string(answer->status) + ", but " + device.error());
    auto now = clock_.steady_now();
    {
        std::lock_guard lock(state_mutex_);
        login_ = Login{*device, now + device->interval, now + device->expires_in, clock_.now() + device->expires_in,
                       "waiting", ""};
    }
    {
        std::lock_guard lock(wake_mutex_);
        kicked_ = true;
    }
    wake_.notify_all();
    spdlog::info("oauth2: device login for {} started; waiting for approval at {}", s->username, device->verification_uri);
    return *device;
}

OAuthStatus OAuthTokens::status() const {
    auto s = settings_();
    OAuthStatus st;
    st.configured = s->auth == SmarthostAuth::oauth2;
    st.grant = s->oauth2.grant == OAuthGrant::refresh_token ? "refresh_token" : "client_credentials";
    st.token_store = s->oauth2.token_store;
    std::lock_guard lock(state_mutex_);
    if (tokens_) {
        st.account = tokens_->account;
        st.scope = tokens_->scope;
        st.has_refresh_token = !tokens_->refresh_token.empty();
        if (!tokens_->access_token.empty()) st.access_expires = tokens_->access_expires;
        st.authorised_at = tokens_->authorised_at;
        st.refreshed_at = tokens_->refreshed_at;
    }
    st.problem = problem_;
    st.problem_since = problem_since_;
    st.needs_login = needs_login_;
    if (login_) {
        st.login = login_->state;
        st.login_error = login_->error;
        st.user_code = login_->device.user_code;
        st.verification_uri = login_->device.verification_uri;
        st.verification_uri_complete = login_->device.verification_uri_complete;
        st.login_expires = login_->expires_wall;
    }
    return st;
}

bool OAuthTokens::in_outage() const {
    std::lock_guard lock(state_mutex_);
    return !problem_.empty();
}

}  // namespace relayguard
