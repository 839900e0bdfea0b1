// Listening sockets from the config's "inet:HOST:PORT" / "unix:/PATH"
// notation, with the unix socket's mode and group applied before anyone can
// connect to it.
#pragma once

#include <string>
#include <optional>

#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace relayguard {

struct ListenAddress {
    bool is_unix = false;
    std::string host;  // inet
    int port = 0;      // inet
    std::string path;  // unix

    static std::optional<ListenAddress> parse(const std::string& spec);
    bool is_loopback() const;
    // libmilter's spelling: "inet:PORT@HOST" or "unix:/PATH".
    std::string milter_spec() const;
};

// Gives the unix socket at `path` to `group` ("" changes nothing), or says
// why it cannot.
Status set_socket_group(const std::string& path, const std::string& group);

// Binds and listens. Answers the socket, or an error message.
Result<UniqueFd> open_listener(const ListenAddress& addr, const std::string& mode,
                                                  const std::string& group);

}  // namespace relayguard
