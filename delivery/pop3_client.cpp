// POP3 login for POP-before-SMTP; see the header.
#include "delivery/pop3_client.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "common/base/text_codec.h"

namespace relayguard {

namespace {

// One reply line without its CRLF.
Result<std::string> read_line(ClientStream& stream, std::string& buffer, Deadline deadline) {
    while (true) {
        auto nl = buffer.find("\r\n");
        if (nl != std::string::npos) {
            std::string line = buffer.substr(0, nl);
            buffer.erase(0, nl + 2);
            return line;
        }
        if (buffer.size() > 8192) return Result<std::string>::failure("reply line too long");
        auto got = stream.receive(buffer, deadline);
        if (!got) return Result<std::string>::failure(got.error());
    }
}

bool ok(const std::string& line) { return line.rfind("+OK", 0) == 0; }

// A server's words for a log line: printable, short.
std::string words(const std::string& line) {
    std::string out;
    for (char c : line.substr(0, 200)) out += (c < 0x20 || c == 0x7f) ? ' ' : c;
    return out;
}

}  // namespace

std::string apop_digest(const std::string& timestamp, const std::string& password) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    std::string input = timestamp + password;
    EVP_Digest(input.data(), input.size(), digest, &len, EVP_md5(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 15];
    }
    return out;
}

std::string apop_timestamp(std::string_view greeting) {
    auto open = greeting.find('<');
    auto close = greeting.find('>', open);
    if (open == std::string_view::npos || close == std::string_view::npos) return "";
    std::string_view ts = greeting.substr(open, close - open + 1);
    if (ts.find('@') == std::string_view::npos) return "";
    return std::string(ts);
}

namespace {

// The lines of one POP3 connection, each read within the attempt's deadline.
struct PopDialogue {
    ClientStream& stream;
    Deadline deadline;
    std::string buffer;
    Result<std::string> line() { return read_line(stream, buffer, deadline); }
    Result<std::string> command(const std::string& text) {
        if (!stream.send(text + "\r\n", deadline)) return Result<std::string>::failure("connection lost");
        return line();
    }
};

// CAPA (RFC 2449): a multi-line list ending in ".", or -ERR; whether it
// names STLS.
Result<bool> offers_stls(PopDialogue& d) {
    auto capa = d.command("CAPA");
    if (!capa) return Result<bool>::failure("CAPA: " + capa.error());
    bool stls = false;
    if (!ok(*capa)) return stls;
    while (true) {
        auto line = d.line();
        if (!line) return Result<bool>::failure("CAPA: " + line.error());
        if (*line == ".") return stls;
        if (ascii_upper(*line) == "STLS") stls = true;
    }
}

// APOP, or USER and PASS: what went wrong, if anything.
std::optional<std::string> send_credentials(PopDialogue& d, const DeliverySettings& s, const std::string& timestamp) {
    auto step = [&](const char* what, const std::string& line) -> std::optional<std::string> {
        auto r = d.command(line);
        if (!r) return std::string(what) + ": " + r.error();
        if (!ok(*r)) return std::string(what) + ": " + words(*r);
        return std::nullopt;
    };
    if (s.pop_method == PopLoginMethod::apop) {
        if (timestamp.empty()) return "APOP: the server's greeting has no timestamp (APOP not offered)";
        return step("APOP", "APOP " + s.username + " " + apop_digest(timestamp, s.password));
    }
    if (auto problem = step("USER", "USER " + s.username)) return problem;
    return step("PASS", "PASS " + s.password);
}

// One attempt; `use_stls` false skips STLS even where offered.
PopLogin login_once(const std::string& address, int port, const DeliverySettings& s, const TlsOptions& tls,
                    Deadline deadline, bool use_stls, bool& stls_failed) {
    PopLogin result;
    result.server = address + ":" + std::to_string(port);
    auto ended = [&](PopLogin::Status status, std::string problem) {
        result.status = status;
        result.problem = std::move(problem);
        return result;
    };
    auto fail = [&](std::string problem) { return ended(PopLogin::Status::failed, std::move(problem)); };
    auto withhold = [&](std::string why) { return ended(PopLogin::Status::withheld, std::move(why)); };
    bool implicit_tls = port == 995;
    auto stream = ClientStream::open(address, port, deadline, implicit_tls, tls);
    if (!stream) return fail(stream.error());
    PopDialogue d{*stream, deadline, ""};
    auto greeting = d.line();
    if (!greeting) return fail("greeting: " + greeting.error());
    if (!ok(*greeting)) return fail("greeting: " + words(*greeting));
    std::string timestamp = apop_timestamp(*greeting);
    auto stls = offers_stls(d);
    if (!stls) return fail(stls.error());
    // USER/PASS puts the password on the wire as it is: only inside TLS,
    // unless the admin said the wire is trusted.
    bool password_needs_tls = s.pop_method == PopLoginMethod::user && !s.allow_plaintext_auth;
    if (!stream->encrypted() && s.starttls != StartTlsPolicy::off && *stls && use_stls) {
        auto started = d.command("STLS");
        if (!started) return fail("STLS: " + started.error());
        if (!ok(*started)) return fail("STLS: " + words(*started));
        if (!d.buffer.empty()) return fail("data after STLS's reply (possible injection)");
        auto h = stream->handshake(tls, deadline);
        if (!h) {
            // A plaintext retry could only end in the same refusal.
            if (password_needs_tls && s.starttls == StartTlsPolicy::opportunistic) return withhold("STLS failed: " + h.error());
            stls_failed = true;
            return fail("STLS: " + h.error());
        }
    }
    if (!stream->encrypted() && s.starttls == StartTlsPolicy::required) {
        return fail("TLS required by delivery.starttls but STLS not offered");
    }
    if (!stream->encrypted() && password_needs_tls) {
        (void)d.command("QUIT");
        return withhold(s.starttls == StartTlsPolicy::off ? "delivery.starttls is off" : "STLS not offered");
    }
    if (auto problem = send_credentials(d, s, timestamp)) return fail(*problem);
    // The login is what counts; a QUIT that goes astray changes nothing.
    (void)d.command("QUIT");
    result.status = PopLogin::Status::logged_in;
    result.encrypted = stream->encrypted();
    result.fresh = true;
    return result;
}

}  // namespace

PopLogin pop3_login(const std::string& address, int port, const DeliverySettings& s, const TlsOptions& tls,
                    Deadline deadline) {
    bool stls_failed = false;
    auto first = login_once(address, port, s, tls, deadline, true, stls_failed);
    // Opportunistic TLS whose handshake fails is tried once more in
    // plaintext, as the SMTP side does (APOP, or USER/PASS where allowed).
    if (first.status == PopLogin::Status::failed && stls_failed && s.starttls == StartTlsPolicy::opportunistic) {
        return login_once(address, port, s, tls, deadline, false, stls_failed);
    }
    return first;
}

PopBeforeSmtp::PopBeforeSmtp(const Clock& clock, Login login) : clock_(clock), login_(std::move(login)) {}

PopLogin PopBeforeSmtp::ensure(const DeliverySettings& s, const std::string& host,
                               const std::vector<std::string>& addresses, int port, Deadline deadline) {
    std::lock_guard lock(mutex_);
    std::string key = s.pop_server + "/" + s.username + "/" + (s.pop_method == PopLoginMethod::apop ? "apop" : "user");
    auto now = clock_.steady_now();
    if (key == last_key_ && now - last_ok_ < s.pop_login_interval) {
        PopLogin reused;
        reused.status = PopLogin::Status::logged_in;
        return reused;
    }
    TlsOptions tls{s.tls_verify && (s.starttls == StartTlsPolicy::required || port == 995), s.tls_ca_file, host};
    PopLogin last;
    last.problem = "no address for " + host;
    for (const auto& address : addresses) {
        auto login = login_(address, port, s, tls, deadline);
        login.server = host + "[" + address + "]:" + std::to_string(port);
        if (login.status == PopLogin::Status::logged_in) {
            spdlog::info("pop-before-smtp: logged in as {} at {}{}", s.username, login.server,
                         login.encrypted ? " over TLS" : "");
            last_key_ = key;
            last_ok_ = clock_.steady_now();
            return login;
        }
        last = std::move(login);
    }
    last_key_.clear();
    return last;
}

}  // namespace relayguard
