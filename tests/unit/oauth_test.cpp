// The relay client's OAuth2: token answers parsed defensively, the token
// store written durably and refused when others may read it, the SASL
// responses byte for byte, and OAuthTokens against a scripted endpoint on
// a hand-moved clock: cached tokens, refresh before expiry, rotation kept,
// invalid_grant held until a human acts, a failing endpoint left alone,
// the idle refresh token used, and the device login.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <deque>
#include <fstream>

#include "common/net/smtp_client.h"
#include "conf/config.h"
#include "delivery/oauth/oauth_tokens.h"
#include "temp_dir.h"

using namespace relayguard;

namespace {

const char* json = "application/json";

// Answers in the order given; records each request's form.
struct ScriptedEndpoint final : TokenEndpoint {
    std::deque<Result<HttpAnswer>> answers;
    std::vector<std::pair<std::string, FormFields>> requests;
    Result<HttpAnswer> post(const std::string& url, const FormFields& form, const std::string&, Duration) override {
        requests.emplace_back(url, form);
        if (answers.empty()) return Result<HttpAnswer>::failure("no answer scripted");
        auto a = answers.front();
        answers.pop_front();
        return a;
    }
    void answer(long status, std::string body, std::string type = json) {
        answers.push_back(HttpAnswer{status, std::move(type), std::move(body)});
    }
    std::string field(std::size_t request, const std::string& key) const {
        for (const auto& [k, v] : requests.at(request).second)
            if (k == key) return v;
        return "";
    }
};

std::string grant(const std::string& access, int expires_in, const std::string& refresh = "") {
    return R"({"token_type":"Bearer","access_token":")" + access + R"(","expires_in":)" + std::to_string(expires_in) +
           (refresh.empty() ? "" : R"(,"refresh_token":")" + refresh + "\"") + "}";
}

struct Fixture {
    test::TempDir dir;
    ManualClock clock;
    ScriptedEndpoint endpoint;
    std::shared_ptr<DeliverySettings> settings = std::make_shared<DeliverySettings>();
    OAuthTokens tokens{[this] { return std::shared_ptr<const DeliverySettings>(settings); }, endpoint, clock};
    Fixture() {
        settings->auth = SmarthostAuth::oauth2;
        settings->username = "relay@example.test";
        settings->oauth2.token_endpoint = "https://idp.test/token";
        settings->oauth2.device_endpoint = "https://idp.test/device";
        settings->oauth2.client_id = "app-1";
        settings->oauth2.scope = "smtp";
        settings->oauth2.token_store = dir.path + "/tokens.json";
    }
    void seed(const std::string& refresh) {
        StoredTokens t;
        t.account = settings->username;
        t.refresh_token = refresh;
        t.refreshed_at = clock.now();
        REQUIRE(write_token_store(settings->oauth2.token_store, t));
    }
    StoredTokens stored() {
        auto t = read_token_store(settings->oauth2.token_store);
        REQUIRE(t);
        REQUIRE(*t);
        return **t;
    }
};

}  // namespace

TEST_CASE("a token answer: a bearer grant is taken, anything hostile is refused without echoing it", "[oauth]") {
    auto ok = parse_token_answer(grant("abc.DEF-123_~+/=", 3599, "r1"), "application/json; charset=utf-8");
    REQUIRE(ok);
    REQUIRE(ok->grant);
    REQUIRE(ok->grant->access_token == "abc.DEF-123_~+/=");
    REQUIRE(ok->grant->refresh_token == "r1");
    REQUIRE(ok->grant->expires_in == std::chrono::seconds(3599));
    // Older Microsoft endpoints send the lifetime as a string.
    auto text_lifetime = parse_token_answer(R"({"token_type":"bearer","access_token":"a","expires_in":"3600"})", json);
    REQUIRE(text_lifetime);
    REQUIRE(text_lifetime->grant->expires_in == std::chrono::seconds(3600));
    // No lifetime: a short one is assumed.
    REQUIRE(parse_token_answer(R"({"token_type":"Bearer","access_token":"a"})", json)->grant->expires_in ==
            std::chrono::minutes(10));

    auto error = parse_token_answer(R"({"error":"invalid_grant","error_description":"AADSTS70008: expired"})", json);
    REQUIRE(error);
    REQUIRE_FALSE(error->grant);
    REQUIRE(error->error == "invalid_grant");
    REQUIRE(error->description == "AADSTS70008: expired");

    auto refused = [](const std::string& body, const std::string& type = json) {
        auto r = parse_token_answer(body, type);
        REQUIRE_FALSE(r);
        REQUIRE(r.error().find("secret-token") == std::string::npos);  // never the value
        return r.error();
    };
    REQUIRE(refused("<html>login</html>", "text/html").find("not JSON") != std::string::npos);
    REQUIRE(refused("{\"access_token\":", json).find("not valid JSON") != std::string::npos);
    REQUIRE(refused("[1,2]").find("not a JSON object") != std::string::npos);
    REQUIRE(refused(R"({"token_type":"Bearer"})").find("neither") != std::string::npos);
    REQUIRE(refused(R"({"access_token":"secret-token"})").find("token_type") != std::string::npos);
    REQUIRE(refused(R"({"token_type":"mac","access_token":"secret-token"})").find("not Bearer") != std::string::npos);
    REQUIRE(refused(R"({"token_type":"Bearer","access_token":"secret-token\u0001auth=x"})").find("control") !=
            std::string::npos);
    REQUIRE(refused(R"({"token_type":"Bearer","access_token":"secret token"})").find("blanks") != std::string::npos);
    REQUIRE(refused(R"({"token_type":"Bearer","access_token":12})").find("not a string") != std::string::npos);
    REQUIRE(refused(R"({"token_type":"Bearer","access_token":"secret-token","expires_in":-5})").find("lifetime") !=
            std::string::npos);
    REQUIRE(refused(R"({"token_type":"Bearer","access_token":"secret-token","expires_in":"1e9"})").find("lifetime") !=
            std::string::npos);
    REQUIRE(refused(std::string(70 * 1024, ' ')).find("64 KiB") != std::string::npos);
    REQUIRE(refused(R"({"token_type":"Bearer","access_token":")" + std::string(20000, 'a') + "\"}").find("too long") !=
            std::string::npos);
}

TEST_CASE("a device authorisation answer: RFC 8628 and Google's spelling; its interval bounded", "[oauth]") {
    auto d = parse_device_authorization(
        R"({"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://idp.test/device","expires_in":900,"interval":0})",
        json);
    REQUIRE(d);
    REQUIRE(d->user_code == "ABCD-EFGH");
    REQUIRE(d->interval == std::chrono::seconds(1));  // never faster than once a second
    auto google = parse_device_authorization(
        R"({"device_code":"dc","user_code":"X","verification_url":"https://www.google.com/device","interval":5})", json);
    REQUIRE(google);
    REQUIRE(google->verification_uri == "https://www.google.com/device");
    REQUIRE_FALSE(parse_device_authorization(R"({"device_code":"dc","user_code":"X","verification_uri":"javascript:x"})", json));
    auto refused = parse_device_authorization(R"({"error":"invalid_client"})", json);
    REQUIRE_FALSE(refused);
    REQUIRE(refused.error().find("invalid_client") != std::string::npos);
}

TEST_CASE("the token store: written whole with mode 0600, refused when others may read it", "[oauth]") {
    test::TempDir dir;
    std::string path = dir.path + "/tokens.json";
    REQUIRE(read_token_store(path));
    REQUIRE_FALSE(*read_token_store(path));  // none yet
    StoredTokens t{"a@example.test", "smtp", "refresh-1", "access-1", TimePoint(std::chrono::hours(1)), {}, {}};
    REQUIRE(write_token_store(path, t));
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    REQUIRE((st.st_mode & 0777) == 0600);
    auto back = read_token_store(path);
    REQUIRE(back);
    REQUIRE((*back)->refresh_token == "refresh-1");
    REQUIRE((*back)->access_expires == TimePoint(std::chrono::hours(1)));
    REQUIRE_FALSE(std::ifstream(path + ".new"));  // no staging file left
    ::chmod(path.c_str(), 0644);
    auto loose = read_token_store(path);
    REQUIRE_FALSE(loose);
    REQUIRE(loose.error().find("chmod 600") != std::string::npos);
}

TEST_CASE("XOAUTH2 and OAUTHBEARER initial responses, byte for byte", "[oauth]") {
    REQUIRE(xoauth2_response("a@b.test", "tok") == std::string("user=a@b.test\x01" "auth=Bearer tok\x01\x01"));
    REQUIRE(oauthbearer_response("a,b=c@d.test", "tok", "smtp.test", 587) ==
            std::string("n,a=a=2Cb=3Dc@d.test,\x01host=smtp.test\x01port=587\x01" "auth=Bearer tok\x01\x01"));
}

TEST_CASE("an access token is cached until the margin before it ends, then refreshed; a rotated refresh token is "
          "stored before use", "[oauth]") {
    Fixture f;
    f.seed("refresh-1");
    f.endpoint.answer(200, grant("access-1", 3600, "refresh-2"));
    auto t = f.tokens.access_token();
    REQUIRE(t);
    REQUIRE(*t == "access-1");
    REQUIRE(f.endpoint.field(0, "grant_type") == "refresh_token");
    REQUIRE(f.endpoint.field(0, "refresh_token") == "refresh-1");
    REQUIRE(f.endpoint.field(0, "client_id") == "app-1");
    REQUIRE(f.endpoint.field(0, "scope") == "smtp");
    REQUIRE(f.stored().refresh_token == "refresh-2");  // rotated, on disk
    REQUIRE(f.stored().access_token == "access-1");

    f.clock.advance(std::chrono::minutes(50));
    REQUIRE(*f.tokens.access_token() == "access-1");  // cached: no request
    REQUIRE(f.endpoint.requests.size() == 1);

    f.clock.advance(std::chrono::minutes(6));  // within 5 min of its end
    f.endpoint.answer(200, grant("access-2", 3600));  // no rotation this time
    REQUIRE(*f.tokens.access_token() == "access-2");
    REQUIRE(f.endpoint.field(1, "refresh_token") == "refresh-2");
    REQUIRE(f.stored().refresh_token == "refresh-2");  // kept when none is rotated

    // The smart host refused it a while after its issue: the next call gets a new one.
    f.clock.advance(std::chrono::seconds(11));
    f.tokens.refused("access-2");
    f.endpoint.answer(200, grant("access-3", 3600));
    REQUIRE(*f.tokens.access_token() == "access-3");
    REQUIRE(f.tokens.counts().refreshed == 3);
}

TEST_CASE("invalid_grant needs a human: no further requests until a login or a new store", "[oauth]") {
    Fixture f;
    f.seed("revoked");
    f.endpoint.answer(400, R"({"error":"invalid_grant","error_description":"revoked"})");
    auto t = f.tokens.access_token();
    REQUIRE_FALSE(t);
    REQUIRE(t.error().find("invalid_grant (revoked)") != std::string::npos);
    REQUIRE(t.error().find("relayguardctl oauth login") != std::string::npos);
    REQUIRE(f.tokens.in_outage());
    REQUIRE(f.tokens.status().needs_login);
    for (int i = 0; i < 5; ++i) {
        f.clock.advance(std::chrono::minutes(10));
        REQUIRE_FALSE(f.tokens.access_token());
    }
    REQUIRE(f.endpoint.requests.size() == 1);  // the provider is not pestered

    // An admin puts a new store in place: used at once.
    f.seed("fresh");
    f.endpoint.answer(200, grant("access-1", 3600));
    REQUIRE(*f.tokens.access_token() == "access-1");
    REQUIRE_FALSE(f.tokens.in_outage());
}

TEST_CASE("an endpoint that fails or lies is left alone for a while, and mail waits meanwhile", "[oauth]") {
    Fixture f;
    f.seed("refresh-1");
    f.endpoint.answers.push_back(Result<HttpAnswer>::failure("Connection refused"));
    auto first = f.tokens.access_token();
    REQUIRE_FALSE(first);
    REQUIRE(first.error().find("Connection refused") != std::string::npos);
    REQUIRE_FALSE(f.tokens.status().needs_login);
    auto again = f.tokens.access_token();  // another delivery thread, at once
    REQUIRE_FALSE(again);
    REQUIRE(again.error().find("asked again in") != std::string::npos);
    REQUIRE(f.endpoint.requests.size() == 1);
    f.clock.advance(std::chrono::seconds(31));
    f.endpoint.answer(200, "<html>maintenance</html>", "text/html");
    auto lied = f.tokens.access_token();
    REQUIRE_FALSE(lied);
    REQUIRE(lied.error().find("not JSON") != std::string::npos);
    f.clock.advance(std::chrono::seconds(31));
    f.endpoint.answer(200, grant("access-1", 3600));
    REQUIRE(*f.tokens.access_token() == "access-1");
    REQUIRE_FALSE(f.tokens.in_outage());
    REQUIRE(f.tokens.counts().refresh_failed == 2);
}

TEST_CASE("tokens for another mailbox are not used, until a login brings the right ones", "[oauth]") {
    Fixture f;
    f.seed("refresh-1");
    f.settings->username = "other@example.test";
    auto t = f.tokens.access_token();
    REQUIRE_FALSE(t);
    REQUIRE(t.error().find("holds tokens for relay@example.test") != std::string::npos);
    REQUIRE(f.tokens.status().needs_login);
    REQUIRE_FALSE(f.tokens.access_token());  // the same store: still waiting for a human
    REQUIRE(f.tokens.status().needs_login);
    REQUIRE(f.endpoint.requests.empty());
}

TEST_CASE("a token the smart host refuses right after its issue is not replaced at every attempt", "[oauth]") {
    Fixture f;
    f.seed("refresh-1");
    f.endpoint.answer(200, grant("access-1", 3600));
    REQUIRE(*f.tokens.access_token() == "access-1");
    f.tokens.refused("access-1");  // a mailbox without the right to send, say
    auto paused = f.tokens.access_token();
    REQUIRE_FALSE(paused);
    REQUIRE(paused.error().find("refused a token just issued") != std::string::npos);
    REQUIRE(f.endpoint.requests.size() == 1);
    f.clock.advance(std::chrono::seconds(31));
    f.endpoint.answer(200, grant("access-2", 3600));
    REQUIRE(*f.tokens.access_token() == "access-2");
    // One refused a while after its issue is replaced at once.
    f.clock.advance(std::chrono::seconds(11));
    f.tokens.refused("access-2");
    f.endpoint.answer(200, grant("access-3", 3600));
    REQUIRE(*f.tokens.access_token() == "access-3");
}

TEST_CASE("a refresh token unused for idle_refresh is used anyway", "[oauth]") {
    Fixture f;
    f.seed("refresh-1");
    f.tokens.maintain();
    REQUIRE(f.endpoint.requests.empty());  // just used
    f.clock.advance(f.settings->oauth2.idle_refresh + std::chrono::minutes(1));
    f.endpoint.answer(200, grant("access-1", 3600, "refresh-2"));
    f.tokens.maintain();
    REQUIRE(f.endpoint.requests.size() == 1);
    REQUIRE(f.stored().refresh_token == "refresh-2");
    REQUIRE(f.stored().refreshed_at == f.clock.now());
}

TEST_CASE("the client-credentials grant asks with the app's secret and needs no refresh token", "[oauth]") {
    Fixture f;
    f.settings->oauth2.grant = OAuthGrant::client_credentials;
    f.settings->oauth2.client_secret = "s3cret";
    f.endpoint.answer(200, grant("app-token", 3600));
    REQUIRE(*f.tokens.access_token() == "app-token");
    REQUIRE(f.endpoint.field(0, "grant_type") == "client_credentials");
    REQUIRE(f.endpoint.field(0, "client_secret") == "s3cret");
    REQUIRE_FALSE(f.tokens.start_login());  // nothing to log in to
}

TEST_CASE("the device login: a code for the admin, polled until approved, then the tokens stored", "[oauth]") {
    Fixture f;
    f.endpoint.answer(200, R"({"device_code":"dev-1","user_code":"WXYZ-1234","verification_uri":"https://idp.test/activate","expires_in":600,"interval":5})");
    auto d = f.tokens.start_login();
    REQUIRE(d);
    REQUIRE(d->user_code == "WXYZ-1234");
    REQUIRE(f.endpoint.requests[0].first == "https://idp.test/device");
    REQUIRE(f.tokens.status().login == "waiting");

    f.clock.advance(std::chrono::seconds(5));
    f.endpoint.answer(400, R"({"error":"authorization_pending"})");
    f.tokens.maintain();
    REQUIRE(f.endpoint.field(1, "device_code") == "dev-1");
    REQUIRE(f.tokens.status().login == "waiting");
    f.clock.advance(std::chrono::seconds(5));
    f.endpoint.answer(400, R"({"error":"slow_down"})");
    f.tokens.maintain();
    f.clock.advance(std::chrono::seconds(5));
    f.tokens.maintain();  // slowed down to 10 s: not yet
    REQUIRE(f.endpoint.requests.size() == 3);
    f.clock.advance(std::chrono::seconds(5));
    f.endpoint.answer(200, grant("access-1", 3600, "refresh-1"));
    f.tokens.maintain();
    REQUIRE(f.tokens.status().login == "authorised");
    REQUIRE(f.stored().refresh_token == "refresh-1");
    REQUIRE(f.stored().account == "relay@example.test");
    REQUIRE(*f.tokens.access_token() == "access-1");

    // A code nobody approves expires.
    f.endpoint.answer(200, R"({"device_code":"dev-2","user_code":"X","verification_uri":"https://idp.test/a","expires_in":10,"interval":5})");
    REQUIRE(f.tokens.start_login());
    for (int i = 0; i < 3; ++i) {
        f.clock.advance(std::chrono::seconds(5));
        f.endpoint.answer(400, R"({"error":"authorization_pending"})");
        f.tokens.maintain();
    }
    REQUIRE(f.tokens.status().login == "failed");
    REQUIRE(f.tokens.status().login_error.find("expired") != std::string::npos);
}

TEST_CASE("config: oauth2 presets fill the endpoints; https only; secrets and keys with loose modes refused",
          "[oauth][config]") {
    const std::string base = "[relay]\nlocal_domains = [\"example.test\"]\n[delivery]\nroute = \"smarthost\"\n"
                             "smarthosts = [\"smtp.office365.com:587\"]\nauth = \"oauth2\"\nusername = \"a@example.test\"\n";
    auto ms = load_config_text(base + "[delivery.oauth2]\nprovider = \"microsoft365\"\nclient_id = \"id\"\n", "t.toml");
    for (const auto& e : ms.errors) FAIL(e.to_string());
    REQUIRE(ms.config->delivery.oauth2.token_endpoint ==
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/token");
    REQUIRE(ms.config->delivery.oauth2.scope == "https://outlook.office.com/SMTP.Send offline_access");

    auto plain = load_config_text(base + "[delivery.oauth2]\ntoken_endpoint = \"http://idp.test/token\"\n"
                                          "client_id = \"id\"\nscope = \"s\"\n", "t.toml");
    REQUIRE(plain.errors.size() == 1);
    REQUIRE(plain.errors[0].to_string().find("delivery.oauth2.token_endpoint") != std::string::npos);
    REQUIRE(plain.errors[0].to_string().find("https://") != std::string::npos);

    auto app_only = load_config_text(base + "[delivery.oauth2]\nprovider = \"microsoft365\"\nclient_id = \"id\"\n"
                                             "grant = \"client_credentials\"\nclient_secret = \"s\"\n", "t.toml");
    REQUIRE(app_only.errors.size() == 1);
    REQUIRE(app_only.errors[0].key == "delivery.oauth2.tenant");

    test::TempDir dir;
    std::string secret = dir.path + "/secret";
    std::ofstream(secret) << "from-file\n";
    ::chmod(secret.c_str(), 0644);
    auto loose = load_config_text(base + "[delivery.oauth2]\nprovider = \"google\"\nclient_id = \"id\"\n"
                                          "client_secret_file = \"" + secret + "\"\n", "t.toml");
    REQUIRE_FALSE(loose.errors.empty());
    REQUIRE(loose.errors[0].to_string().find("chmod o-rw") != std::string::npos);
    ::chmod(secret.c_str(), 0640);
    auto tight = load_config_text(base + "[delivery.oauth2]\nprovider = \"google\"\nclient_id = \"id\"\n"
                                          "client_secret_file = \"" + secret + "\"\n", "t.toml");
    for (const auto& e : tight.errors) FAIL(e.to_string());
    REQUIRE(tight.config->delivery.oauth2.client_secret == "from-file");

    std::string key = dir.path + "/client.key", cert = dir.path + "/client.crt";
    std::ofstream(key) << "x";
    std::ofstream(cert) << "x";
    ::chmod(key.c_str(), 0644);
    auto loose_key = load_config_text("[relay]\nlocal_domains = [\"example.test\"]\n[delivery]\ntls_client_cert = \"" +
                                          cert + "\"\ntls_client_key = \"" + key + "\"\n", "t.toml");
    REQUIRE(loose_key.errors.size() == 1);
    REQUIRE(loose_key.errors[0].key == "delivery.tls_client_key");
    auto half = load_config_text("[relay]\nlocal_domains = [\"example.test\"]\n[delivery]\ntls_client_cert = \"" + cert +
                                     "\"\n", "t.toml");
    REQUIRE(half.errors.size() == 1);
}

TEST_CASE("a refused application is asked again only once its settings change (a reload)", "[oauth]") {
    Fixture f;
    f.settings->oauth2.grant = OAuthGrant::client_credentials;
    f.settings->oauth2.client_secret = "wrong";
    // It worked once (a store exists), then its secret was withdrawn.
    f.endpoint.answer(200, grant("app-token-0", 3600));
    REQUIRE(f.tokens.access_token());
    f.clock.advance(std::chrono::minutes(61));
    f.endpoint.requests.clear();
    f.endpoint.answer(401, R"({"error":"invalid_client","error_description":"bad secret"})");
    auto refused = f.tokens.access_token();
    REQUIRE_FALSE(refused);
    REQUIRE(refused.error().find("check client_id, client_secret") != std::string::npos);
    f.clock.advance(std::chrono::minutes(5));
    REQUIRE_FALSE(f.tokens.access_token());
    REQUIRE(f.endpoint.requests.size() == 1);  // the same secret is not tried again
    f.settings->oauth2.client_secret = "right";  // what a reload brings
    f.endpoint.answer(200, grant("app-token", 3600));
    REQUIRE(*f.tokens.access_token() == "app-token");
    REQUIRE(f.endpoint.requests.size() == 2);
}
