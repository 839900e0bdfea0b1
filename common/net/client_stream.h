// A client's TCP connection to a mail server, plain or TLS (from the start,
// or upgraded by STARTTLS/STLS), where every read and write has a deadline:
// a server that stops answering ends the call instead of stalling a thread.
// SMTP and POP3 speak over it.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace relayguard {

using Deadline = std::chrono::steady_clock::time_point;

struct TlsOptions {
    bool verify = true;       // check the certificate and the host name
    std::string ca_file;      // "" = the system's CAs
    std::string server_name;  // for SNI and the name check
    std::string cert_file = "";  // a client certificate (PEM chain); "" = none
    std::string key_file = "";   // its key
};

class ClientStream {
public:
    // Connects to `address`:`port` (an IP address). Implicit TLS when asked.
    static Result<ClientStream> open(const std::string& address, int port, Deadline deadline, bool implicit_tls,
                                     const TlsOptions& tls);
    ClientStream(ClientStream&&) noexcept;
    ClientStream& operator=(ClientStream&&) noexcept;
    ~ClientStream();

    // The TLS handshake on the open connection (after STARTTLS or STLS).
    Result<bool> handshake(const TlsOptions& tls, Deadline deadline);
    bool send(std::string_view data, Deadline deadline);
    // Appends what arrives to `buffer`; an error says "no reply in time",
    // "connection closed by the server" or "read failed".
    Result<bool> receive(std::string& buffer, Deadline deadline);
    bool encrypted() const { return ssl_ != nullptr; }

private:
    ClientStream() = default;
    bool set_timeout(Deadline deadline);

    struct FreeSsl {
        void operator()(SSL* s) const { SSL_free(s); }
    };
    struct FreeCtx {
        void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
    };
    UniqueFd fd_;
    std::unique_ptr<SSL_CTX, FreeCtx> ctx_;
    std::unique_ptr<SSL, FreeSsl> ssl_;
};

}  // namespace relayguard
