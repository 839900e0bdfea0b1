// SMTP client; see the header.
#include "common/net/smtp_client.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>

#include "common/base/text_codec.h"

namespace relayguard {

std::string SmtpResponse::text() const {
    return std::to_string(code) + (lines.empty() ? "" : " " + lines.front());
}

Result<std::optional<SmtpResponse>> parse_smtp_response(std::string& buffer) {
    using R = Result<std::optional<SmtpResponse>>;
    SmtpResponse r;
    std::size_t pos = 0;
    while (true) {
        auto nl = buffer.find('\n', pos);
        if (nl == std::string::npos) {
            if (buffer.size() > 64 * 1024) return R::failure("reply line longer than 64 KiB");
            return std::optional<SmtpResponse>{};
        }
        std::string_view line(buffer.data() + pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        pos = nl + 1;
        if (line.size() < 3 || !std::isdigit(static_cast<unsigned char>(line[0])) ||
            !std::isdigit(static_cast<unsigned char>(line[1])) || !std::isdigit(static_cast<unsigned char>(line[2])) ||
            (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
            return R::failure("malformed reply line: " + std::string(line.substr(0, 80)));
        }
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (r.code != 0 && code != r.code) return R::failure("reply code changed inside a multi-line reply");
        r.code = code;
        r.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view{});
        if (line.size() == 3 || line[3] == ' ') break;
    }
    buffer.erase(0, pos);
    return std::optional<SmtpResponse>{std::move(r)};
}

std::string dot_stuff(std::string_view content) {
    std::string out;
    out.reserve(content.size() + content.size() / 50 + 8);
    bool line_start = true;
    for (std::size_t i = 0; i < content.size(); ++i) {
        char c = content[i];
        if (line_start && c == '.') out += '.';
        if (c == '\n' && (i == 0 || content[i - 1] != '\r')) out += '\r';
        out += c;
        line_start = c == '\n';
    }
    if (!out.empty() && !line_start) out += "\r\n";
    out += ".\r\n";
    return out;
}

std::string cram_md5_answer(const std::string& user, const std::string& password, const std::string& challenge) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_md5(), password.data(), static_cast<int>(password.size()),
         reinterpret_cast<const unsigned char*>(challenge.data()), challenge.size(), digest, &len);
    static const char hex[] = "0123456789abcdef";
    std::string out = user + " ";
    for (unsigned int i = 0; i < len; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 0xf];
    }
    return out;
}

Result<SmtpConnection> SmtpConnection::open(const std::string& address, int port, Deadline deadline,
                                            bool implicit_tls, const TlsOptions& tls) {
    auto stream = ClientStream::open(address, port, deadline, implicit_tls, tls);
    if (!stream) return Result<SmtpConnection>::failure(stream.error());
    return SmtpConnection(std::move(*stream));
}

bool SmtpConnection::send(std::string_view data, Deadline deadline) { return stream_.send(data, deadline); }

Result<SmtpResponse> SmtpConnection::read(Deadline deadline) {
    using R = Result<SmtpResponse>;
    while (true) {
        auto parsed = parse_smtp_response(buffer_);
        if (!parsed) return R::failure(parsed.error());
        if (*parsed) return std::move(**parsed);
        auto got = stream_.receive(buffer_, deadline);
        if (!got) return R::failure(got.error());
    }
}

Result<SmtpResponse> SmtpConnection::command(const std::string& line, Deadline deadline) {
    if (!send(line + "\r\n", deadline)) return Result<SmtpResponse>::failure("could not send " + line.substr(0, line.find(' ')));
    return read(deadline);
}

Result<std::vector<SmtpResponse>> SmtpConnection::pipeline(const std::vector<std::string>& lines, Deadline deadline) {
    using R = Result<std::vector<SmtpResponse>>;
    std::string all;
    for (const auto& l : lines) all += l + "\r\n";
    if (!send(all, deadline)) return R::failure("could not send the envelope");
    std::vector<SmtpResponse> out;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        auto r = read(deadline);
        if (!r) return R::failure(r.error());
        out.push_back(std::move(*r));
    }
    return out;
}

Result<std::vector<SmtpResponse>> SmtpConnection::sequence(const std::vector<std::string>& lines, Deadline deadline) {
    using R = Result<std::vector<SmtpResponse>>;
    std::vector<SmtpResponse> out;
    for (const auto& l : lines) {
        auto r = command(l, deadline);
        if (!r) return R::failure(r.error());
        out.push_back(std::move(*r));
        if (out.size() == 1 && !out[0].positive()) break;
    }
    return out;
}

Result<SmtpResponse> SmtpConnection::hello(const std::string& name, Deadline deadline) {
    capabilities_.clear();
    auth_.clear();
    auto r = command("EHLO " + name, deadline);
    if (!r) return r;
    if (r->code != 250) {
        r = command("HELO " + name, deadline);
        return r;
    }
    for (std::size_t i = 1; i < r->lines.size(); ++i) {
        std::string line = ascii_upper(r->lines[i]);
        std::string keyword = line.substr(0, line.find_first_of(" ="));
        capabilities_.insert(keyword);
        if (keyword == "AUTH") {
            std::size_t pos = 5;
            while (pos < line.size()) {
                auto end = line.find(' ', pos);
                if (end == std::string::npos) end = line.size();
                if (end > pos) auth_.insert(line.substr(pos, end - pos));
                pos = end + 1;
            }
        }
    }
    return r;
}

Result<SmtpResponse> SmtpConnection::start_tls(const TlsOptions& tls, Deadline deadline) {
    auto r = command("STARTTLS", deadline);
    if (!r || r->code != 220) return r;
    if (!buffer_.empty()) return Result<SmtpResponse>::failure("data after STARTTLS's reply (possible injection)");
    auto h = stream_.handshake(tls, deadline);
    if (!h) return Result<SmtpResponse>::failure(h.error());
    capabilities_.clear();
    auth_.clear();
    return r;
}

Result<SmtpResponse> SmtpConnection::authenticate(const std::string& user, const std::string& password,
                                                  Deadline deadline, bool plaintext_password_allowed) {
    using R = Result<SmtpResponse>;
    if (auth_reveals_password() && !plaintext_password_allowed) {
        return R::failure("AUTH not sent: the connection is not encrypted and the password would cross it readable");
    }
    if (auth_.count("CRAM-MD5") && !encrypted()) {
        auto r = command("AUTH CRAM-MD5", deadline);
        if (!r || r->code != 334 || r->lines.empty()) return r;
        auto challenge = base64_decode(r->lines[0]);
        if (!challenge) return R::failure("AUTH CRAM-MD5: malformed challenge");
        return command(base64_encode(cram_md5_answer(user, password, *challenge)), deadline);
    }
    if (auth_.count("PLAIN")) {
        std::string token = std::string(1, '\0') + user + std::string(1, '\0') + password;
        auto r = command("AUTH PLAIN " + base64_encode(token), deadline);
        if (!r) return R::failure("AUTH PLAIN: " + r.error());
        return r;
    }
    if (auth_.count("LOGIN")) {
        auto r = command("AUTH LOGIN", deadline);
        if (!r || r->code != 334) return r;
        r = command(base64_encode(user), deadline);
        if (!r || r->code != 334) return r;
        return command(base64_encode(password), deadline);
    }
    return R::failure("the server offers neither AUTH PLAIN nor LOGIN" +
                      std::string(encrypted() ? "" : " (some offer AUTH only after STARTTLS)"));
}

std::string xoauth2_response(const std::string& user, const std::string& token) {
    return "user=" + user + "\x01" + "auth=Bearer " + token + "\x01\x01";
}

std::string oauthbearer_response(const std::string& user, const std::string& token, const std::string& host, int port) {
    // RFC 7628 3.1: a GS2 header whose authzid escapes ',' and '=' (RFC 5801),
    // then key=value pairs, each ended by ^A, and a final ^A.
    std::string name;
    for (char c : user) {
        if (c == ',') name += "=2C";
        else if (c == '=') name += "=3D";
        else name += c;
    }
    return "n,a=" + name + ",\x01host=" + host + "\x01port=" + std::to_string(port) + "\x01" "auth=Bearer " + token +
           "\x01\x01";
}

Result<SmtpResponse> SmtpConnection::authenticate_bearer(const std::string& user, const std::string& token,
                                                         const std::string& host, int port, Deadline deadline) {
    using R = Result<SmtpResponse>;
    // A bearer token is as good as a password for its lifetime: TLS only.
    if (!encrypted()) return R::failure("the OAuth2 token not sent: the connection is not encrypted");
    std::string mechanism = auth_.count("OAUTHBEARER") ? "OAUTHBEARER" : auth_.count("XOAUTH2") ? "XOAUTH2" : "";
    if (mechanism.empty()) {
        std::string offered;
        for (const auto& m : auth_) offered += (offered.empty() ? "" : " ") + m;
        return R::failure("the server offers neither XOAUTH2 nor OAUTHBEARER (AUTH " +
                          (offered.empty() ? std::string("none") : offered) + ")");
    }
    std::string response = mechanism == "XOAUTH2" ? xoauth2_response(user, token)
                                                  : oauthbearer_response(user, token, host, port);
    auto r = command("AUTH " + mechanism + " " + base64_encode(response), deadline);
    if (!r) return R::failure("AUTH " + mechanism + ": " + r.error());
    if (r->code != 334) return r;
    // A refusal comes as a 334 with the error as base64 JSON (RFC 7628 3.2.2);
    // the client ends the exchange (^A for OAUTHBEARER, an empty line for
    // XOAUTH2) and the server answers 535 or 454.
    std::string why;
    if (!r->lines.empty()) {
        if (auto decoded = base64_decode(r->lines[0])) {
            for (char c : decoded->substr(0, 200)) why += (c >= 0x20 && c < 0x7f) ? c : ' ';
        }
    }
    auto end = command(mechanism == "OAUTHBEARER" ? base64_encode("\x01") : "", deadline);
    if (!end) return R::failure("AUTH " + mechanism + ": " + end.error());
    if (!why.empty()) end->lines.push_back(why);
    return end;
}

Result<SmtpResponse> SmtpConnection::data(std::string_view content, Deadline deadline) {
    auto r = command("DATA", deadline);
    if (!r || r->code != 354) return r;
    if (!send(dot_stuff(content), deadline)) return Result<SmtpResponse>::failure("connection lost while sending the message");
    return read(deadline);
}

}  // namespace relayguard
