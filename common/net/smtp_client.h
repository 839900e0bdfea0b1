// The client side of SMTP, used by the relay client to deliver and by the
// policy daemon to hand its alerts to the relay client: one connection to one server, plain or
// TLS (STARTTLS, or implicit TLS on port 465), EHLO capabilities, AUTH PLAIN
// or LOGIN, and one message at a time with dot-stuffing. Every read and
// write has a deadline, so a server that stops answering ends the attempt
// instead of stalling a delivery thread.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/net/client_stream.h"
#include "common/base/result.h"

namespace relayguard {

struct SmtpResponse {
    int code = 0;
    std::vector<std::string> lines;  // text after "250-" / "250 "
    std::string text() const;        // "250 first line"
    bool positive() const { return code >= 200 && code < 400; }
    bool temporary() const { return code >= 400 && code < 500; }
    bool permanent() const { return code >= 500; }
};

// Reads one (multi-line) reply from `buffer`, taking what it used. std::nullopt:
// not complete yet. A malformed reply is an error.
Result<std::optional<SmtpResponse>> parse_smtp_response(std::string& buffer);

// "." at the start of a line doubled, bare LF made CRLF, CRLF.CRLF appended.
std::string dot_stuff(std::string_view content);

// The CRAM-MD5 answer (RFC 2195) to a server's decoded challenge: "user hexdigest".
std::string cram_md5_answer(const std::string& user, const std::string& password, const std::string& challenge);

// The SASL initial responses of the bearer-token mechanisms: XOAUTH2
// (Google's and Microsoft's) and OAUTHBEARER (RFC 7628).
std::string xoauth2_response(const std::string& user, const std::string& token);
std::string oauthbearer_response(const std::string& user, const std::string& token, const std::string& host, int port);

class SmtpConnection {
public:
    // Connects to `address`:`port` (an IP address). Implicit TLS when asked.
    static Result<SmtpConnection> open(const std::string& address, int port, Deadline deadline, bool implicit_tls,
                                       const TlsOptions& tls);
    SmtpConnection(SmtpConnection&&) noexcept = default;
    SmtpConnection& operator=(SmtpConnection&&) noexcept = default;

    Result<SmtpResponse> greeting(Deadline deadline) { return read(deadline); }
    Result<SmtpResponse> command(const std::string& line, Deadline deadline);
    // Every line in one write, then every reply (RFC 2920 PIPELINING).
    Result<std::vector<SmtpResponse>> pipeline(const std::vector<std::string>& lines, Deadline deadline);
    // The same one at a time; stops after a first line (MAIL) that is refused.
    Result<std::vector<SmtpResponse>> sequence(const std::vector<std::string>& lines, Deadline deadline);
    // EHLO, falling back to HELO; fills capabilities().
    Result<SmtpResponse> hello(const std::string& name, Deadline deadline);
    // STARTTLS and the handshake; the capabilities are forgotten (RFC 3207).
    Result<SmtpResponse> start_tls(const TlsOptions& tls, Deadline deadline);
    // AUTH with the best offered mechanism: CRAM-MD5 on a plaintext
    // connection (the password never crosses it), else PLAIN, LOGIN. Where
    // PLAIN or LOGIN would put the password on an unencrypted connection and
    // `plaintext_password_allowed` is false, nothing is sent (an error).
    Result<SmtpResponse> authenticate(const std::string& user, const std::string& password, Deadline deadline,
                                      bool plaintext_password_allowed);
    // AUTH OAUTHBEARER where offered, else XOAUTH2, with an OAuth2 access
    // token; only over an encrypted connection. A refusal answers the
    // server's final reply with its decoded error added as a last line.
    Result<SmtpResponse> authenticate_bearer(const std::string& user, const std::string& token,
                                             const std::string& host, int port, Deadline deadline);
    // Whether authenticate() would send the password readable on the wire:
    // not encrypted, and no CRAM-MD5 offered.
    bool auth_reveals_password() const { return !encrypted() && auth_.count("CRAM-MD5") == 0; }
    // DATA, the content, the final dot: the server's answer to the dot.
    Result<SmtpResponse> data(std::string_view content, Deadline deadline);

    bool offers(const std::string& keyword) const { return capabilities_.count(keyword) > 0; }
    bool encrypted() const { return stream_.encrypted(); }

private:
    explicit SmtpConnection(ClientStream stream) : stream_(std::move(stream)) {}
    Result<SmtpResponse> read(Deadline deadline);
    bool send(std::string_view data, Deadline deadline);

    ClientStream stream_;
    std::string buffer_;
    std::set<std::string> capabilities_;
    std::set<std::string> auth_;
};

}  // namespace relayguard
