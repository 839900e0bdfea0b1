// Client connections; see the header.
#include "common/net/client_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/base/system_clock.h"

namespace relayguard {

namespace {

std::string ssl_error() {
    unsigned long e = ERR_get_error();
    if (e == 0) return "TLS error";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

}  // namespace

ClientStream::ClientStream(ClientStream&&) noexcept = default;
ClientStream& ClientStream::operator=(ClientStream&&) noexcept = default;
ClientStream::~ClientStream() {
    if (ssl_) SSL_shutdown(ssl_.get());
}

bool ClientStream::set_timeout(Deadline deadline) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - SystemClock::monotonic());
    if (left.count() <= 0) return false;
    timeval tv{static_cast<time_t>(left.count() / 1'000'000), static_cast<suseconds_t>(left.count() % 1'000'000)};
    return ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
           ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
}

Result<ClientStream> ClientStream::open(const std::string& address, int port, Deadline deadline,
                                            bool implicit_tls, const TlsOptions& tls) {
    using R = Result<ClientStream>;
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<std::uint16_t>(port));
        len = sizeof *v4;
    } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<std::uint16_t>(port));
        len = sizeof *v6;
    } else {
        return R::failure("not an IP address: " + address);
    }
    ClientStream c;
    c.fd_.reset(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!c.fd_) return R::failure(std::string("socket: ") + std::strerror(errno));
    if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
        return R::failure(std::string("connect: ") + std::strerror(errno));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SystemClock::monotonic());
    pollfd p{c.fd_.get(), POLLOUT, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) return R::failure("connect: timed out");
    int err = 0;
    socklen_t err_len = sizeof err;
    ::getsockopt(c.fd_.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) return R::failure(std::string("connect: ") + std::strerror(err));
    // Blocking from here on, each call bounded by the socket timeouts.
    int flags = ::fcntl(c.fd_.get(), F_GETFL);
    ::fcntl(c.fd_.get(), F_SETFL, flags & ~O_NONBLOCK);
    if (implicit_tls) {
        auto h = c.handshake(tls, deadline);
        if (!h) return R::failure(h.error());
    }
    return c;
}

Result<bool> ClientStream::handshake(const TlsOptions& tls, Deadline deadline) {
    using R = Result<bool>;
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx_) return R::failure(ssl_error());
    SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION);
    if (tls.ca_file.empty()) {
        SSL_CTX_set_default_verify_paths(ctx_.get());
    } else if (SSL_CTX_load_verify_locations(ctx_.get(), tls.ca_file.c_str(), nullptr) != 1) {
        return R::failure("tls_ca_file " + tls.ca_file + ": " + ssl_error());
    }
    // A client certificate, for servers that relay for a known one (Postfix's
    // permit_tls_clientcerts, Microsoft 365's certificate connector).
    if (!tls.cert_file.empty()) {
        if (SSL_CTX_use_certificate_chain_file(ctx_.get(), tls.cert_file.c_str()) != 1) {
            return R::failure("tls_client_cert " + tls.cert_file + ": " + ssl_error());
        }
        if (SSL_CTX_use_PrivateKey_file(ctx_.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
            return R::failure("tls_client_key " + tls.key_file + ": " + ssl_error());
        }
        if (SSL_CTX_check_private_key(ctx_.get()) != 1) {
            return R::failure("tls_client_key " + tls.key_file + " does not belong to tls_client_cert " + tls.cert_file);
        }
    }
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd_.get());
    if (!tls.server_name.empty()) {
        // SNI carries host names only (RFC 6066 3); an address is checked
        // against the certificate's IP names all the same.
        unsigned char scratch[16];
        bool literal = ::inet_pton(AF_INET, tls.server_name.c_str(), scratch) == 1 ||
                       ::inet_pton(AF_INET6, tls.server_name.c_str(), scratch) == 1;
        if (!literal) SSL_set_tlsext_host_name(ssl_.get(), tls.server_name.c_str());
        SSL_set1_host(ssl_.get(), tls.server_name.c_str());
    }
    SSL_set_verify(ssl_.get(), tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    if (!set_timeout(deadline)) return R::failure("TLS handshake: timed out");
    if (SSL_connect(ssl_.get()) != 1) {
        long v = SSL_get_verify_result(ssl_.get());
        std::string why = v != X509_V_OK ? std::string("certificate: ") + X509_verify_cert_error_string(v) : ssl_error();
        ssl_.reset();
        return R::failure("TLS handshake: " + why);
    }
    return true;
}

bool ClientStream::send(std::string_view data, Deadline deadline) {
    if (!set_timeout(deadline)) return false;
    while (!data.empty()) {
        int n = ssl_ ? SSL_write(ssl_.get(), data.data(), static_cast<int>(std::min<std::size_t>(data.size(), 1 << 20)))
                     : static_cast<int>(::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL));
        if (n < 0 && !ssl_ && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

Result<bool> ClientStream::receive(std::string& buffer, Deadline deadline) {
    using R = Result<bool>;
    while (true) {
        if (!set_timeout(deadline)) return R::failure("no reply in time");
        char buf[4096];
        int n = ssl_ ? SSL_read(ssl_.get(), buf, sizeof buf) : static_cast<int>(::recv(fd_.get(), buf, sizeof buf, 0));
        if (n < 0 && !ssl_ && errno == EINTR) continue;
        if (n == 0) return R::failure("connection closed by the server");
        if (n < 0) return R::failure(errno == EAGAIN || errno == EWOULDBLOCK ? "no reply in time" : "read failed");
        buffer.append(buf, static_cast<std::size_t>(n));
        return true;
    }
}

}  // namespace relayguard
