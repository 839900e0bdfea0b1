// Listening sockets; see the header.
#include "common/net/listen_socket.h"

#include <arpa/inet.h>
#include <grp.h>
#include <pwd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

namespace relayguard {

namespace {
// The kernel's own ceiling (net.core.somaxconn caps it): a burst of
// connections waits in the queue for the next accept instead of having its
// SYNs dropped and retried a second or more later.
constexpr int listen_backlog = SOMAXCONN;
}  // namespace

std::optional<ListenAddress> ListenAddress::parse(const std::string& spec) {
    ListenAddress a;
    if (spec.rfind("unix:", 0) == 0) {
        a.is_unix = true;
        a.path = spec.substr(5);
        if (a.path.empty() || a.path[0] != '/' || a.path.size() >= sizeof(sockaddr_un{}.sun_path)) return std::nullopt;
        return a;
    }
    if (spec.rfind("inet:", 0) != 0) return std::nullopt;
    std::string rest = spec.substr(5);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    a.host = rest.substr(0, colon);
    if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']') a.host = a.host.substr(1, a.host.size() - 2);
    try {
        a.port = std::stoi(rest.substr(colon + 1));
    } catch (...) {
        return std::nullopt;
    }
    if (a.port <= 0 || a.port > 65535 || a.host.empty()) return std::nullopt;
    return a;
}

bool ListenAddress::is_loopback() const {
    return is_unix || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string ListenAddress::milter_spec() const {
    if (is_unix) return "unix:" + path;
    return (host.find(':') != std::string::npos ? "inet6:" : "inet:") + std::to_string(port) + "@" + host;
}

Status set_socket_group(const std::string& path, const std::string& group) {
    if (group.empty()) return Done{};
    struct group* g = ::getgrnam(group.c_str());
    if (g == nullptr) return Status::failure("no such group \"" + group + "\"");
    if (::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
        return Status::failure("chown " + path + ": " + std::strerror(errno));
    }
    return Done{};
}

Result<UniqueFd> open_listener(const ListenAddress& addr, const std::string& mode,
                                                  const std::string& group) {
    auto fail = [](const std::string& what) { return Result<UniqueFd>::failure(what + ": " + std::strerror(errno)); };
    if (addr.is_unix) {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd) return fail("socket");
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strncpy(sun.sun_path, addr.path.c_str(), sizeof(sun.sun_path) - 1);
        ::unlink(addr.path.c_str());
        // Bind under a umask that already gives the final mode, so there is
        // no moment at which the socket is more open than configured.
        mode_t want = static_cast<mode_t>(std::stoul(mode, nullptr, 8));
        mode_t old = ::umask(static_cast<mode_t>(~want & 0777));
        int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun));
        ::umask(old);
        if (rc != 0 && (errno == EACCES || errno == ENOENT)) {
            // Most often /run/relayguard: made by systemd's RuntimeDirectory,
            // by tmpfiles.d at boot, or by a daemon started as root; a
            // start as the unprivileged user by other means needs it made.
            std::string why = "bind " + addr.path + ": " + std::strerror(errno);
            std::string dir = addr.path.substr(0, addr.path.rfind('/'));
            passwd* pw = ::getpwuid(::geteuid());
            std::string user = pw ? pw->pw_name : std::to_string(::geteuid());
            return Result<UniqueFd>::failure(
                why + "; " + dir + " must exist and be writable by " + user + ": create it (install -d -o " + user +
                " -m 0750 " + dir + "; the package's tmpfiles.d and systemd units do this), or start as root with "
                "daemon.user set");
        }
        if (rc != 0) return fail("bind " + addr.path);
        if (auto grouped = set_socket_group(addr.path, group); !grouped) return Result<UniqueFd>::failure(grouped.error());
        if (::listen(fd.get(), listen_backlog) != 0) return fail("listen " + addr.path);
        return fd;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string port = std::to_string(addr.port);
    if (int rc = ::getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
        return Result<UniqueFd>::failure("cannot resolve \"" + addr.host + "\": " + gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
    UniqueFd fd(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail("socket");
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0) return fail("bind " + addr.host + ":" + port);
    if (::listen(fd.get(), listen_backlog) != 0) return fail("listen");
    return fd;
}

}  // namespace relayguard
