// SMTP client; see the header.
#include "delivery/smtp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <fcntl.h>
#include <cstring>

namespace relayguard {

namespace {

std::string ssl_error() {
    unsigned long e = ERR_get_error();
    if (e == 0) return "TLS error";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

std::string base64(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string upper(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

}  // namespace

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

SmtpConnection::SmtpConnection(SmtpConnection&&) noexcept = default;
SmtpConnection& SmtpConnection::operator=(SmtpConnection&&) noexcept = default;
SmtpConnection::~SmtpConnection() {
    if (ssl_) SSL_shutdown(ssl_.get());
}

bool SmtpConnection::set_timeout(Deadline deadline) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    timeval tv{static_cast<time_t>(left.count() / 1'000'000), static_cast<suseconds_t>(left.count() % 1'000'000)};
    return ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
           ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0;
}

Result<SmtpConnection> SmtpConnection::open(const std::string& address, int port, Deadline deadline,
                                            bool implicit_tls, const TlsOptions& tls) {
    using R = Result<SmtpConnection>;
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
    SmtpConnection c;
    c.fd_.reset(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!c.fd_) return R::failure(std::string("socket: ") + std::strerror(errno));
    if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
        return R::failure(std::string("connect: ") + std::strerror(errno));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
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

Result<bool> SmtpConnection::handshake(const TlsOptions& tls, Deadline deadline) {
    using R = Result<bool>;
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx_) return R::failure(ssl_error());
    SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION);
    if (tls.ca_file.empty()) {
        SSL_CTX_set_default_verify_paths(ctx_.get());
    } else if (SSL_CTX_load_verify_locations(ctx_.get(), tls.ca_file.c_str(), nullptr) != 1) {
        return R::failure("tls_ca_file " + tls.ca_file + ": " + ssl_error());
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

bool SmtpConnection::send(std::string_view data, Deadline deadline) {
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

Result<SmtpResponse> SmtpConnection::read(Deadline deadline) {
    using R = Result<SmtpResponse>;
    while (true) {
        auto parsed = parse_smtp_response(buffer_);
        if (!parsed) return R::failure(parsed.error());
        if (*parsed) return std::move(**parsed);
        if (!set_timeout(deadline)) return R::failure("no reply in time");
        char buf[4096];
        int n = ssl_ ? SSL_read(ssl_.get(), buf, sizeof buf) : static_cast<int>(::recv(fd_.get(), buf, sizeof buf, 0));
        if (n < 0 && !ssl_ && errno == EINTR) continue;
        if (n == 0) return R::failure("connection closed by the server");
        if (n < 0) return R::failure(errno == EAGAIN || errno == EWOULDBLOCK ? "no reply in time" : "read failed");
        buffer_.append(buf, static_cast<std::size_t>(n));
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
        std::string line = upper(r->lines[i]);
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
    auto h = handshake(tls, deadline);
    if (!h) return Result<SmtpResponse>::failure(h.error());
    capabilities_.clear();
    auth_.clear();
    return r;
}

Result<SmtpResponse> SmtpConnection::authenticate(const std::string& user, const std::string& password,
                                                  Deadline deadline) {
    using R = Result<SmtpResponse>;
    if (auth_.count("CRAM-MD5") && !encrypted()) {
        auto r = command("AUTH CRAM-MD5", deadline);
        if (!r || r->code != 334 || r->lines.empty()) return r;
        std::string challenge(r->lines[0].size(), '\0');
        int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(challenge.data()),
                                reinterpret_cast<const unsigned char*>(r->lines[0].data()),
                                static_cast<int>(r->lines[0].size()));
        if (n < 0) return R::failure("AUTH CRAM-MD5: malformed challenge");
        challenge.resize(static_cast<std::size_t>(n));
        while (!challenge.empty() && challenge.back() == '\0') challenge.pop_back();  // base64 padding
        return command(base64(cram_md5_answer(user, password, challenge)), deadline);
    }
    if (auth_.count("PLAIN")) {
        std::string token = std::string(1, '\0') + user + std::string(1, '\0') + password;
        auto r = command("AUTH PLAIN " + base64(token), deadline);
        if (!r) return R::failure("AUTH PLAIN: " + r.error());
        return r;
    }
    if (auth_.count("LOGIN")) {
        auto r = command("AUTH LOGIN", deadline);
        if (!r || r->code != 334) return r;
        r = command(base64(user), deadline);
        if (!r || r->code != 334) return r;
        return command(base64(password), deadline);
    }
    return R::failure("the server offers neither AUTH PLAIN nor LOGIN" +
                      std::string(encrypted() ? "" : " (some offer AUTH only after STARTTLS)"));
}

Result<SmtpResponse> SmtpConnection::data(std::string_view content, Deadline deadline) {
    auto r = command("DATA", deadline);
    if (!r || r->code != 354) return r;
    if (!send(dot_stuff(content), deadline)) return Result<SmtpResponse>::failure("connection lost while sending the message");
    return read(deadline);
}

}  // namespace relayguard
