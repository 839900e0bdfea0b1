// The token store; see the header.
#include "delivery/oauth/token_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/base/durable_file.h"
#include "common/base/unique_fd.h"
#include "delivery/oauth/token_response.h"
#include "delivery/queue/queue_file.h"

namespace relayguard {

namespace {

using Json = nlohmann::json;

long long millis(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint from_millis(const Json& j, const char* name) {
    auto it = j.find(name);
    return TimePoint(Duration(it != j.end() && it->is_number_integer() ? it->get<long long>() : 0));
}


}  // namespace

Lookup<StoredTokens> read_token_store(const std::string& path) {
    using R = Lookup<StoredTokens>;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        if (errno == ENOENT) return std::optional<StoredTokens>();
        return R::failure("cannot open " + path + ": " + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return R::failure(path + " is not a regular file");
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return R::failure(path + " holds tokens but others may use it (mode " + mode + "); chmod 600 it");
    }
    if (st.st_size > static_cast<off_t>(4 * max_token_body)) return R::failure(path + " is too large to be a token store");
    std::string body(static_cast<std::size_t>(st.st_size), '\0');
    std::size_t got = 0;
    while (got < body.size()) {
        ssize_t n = ::read(fd.get(), body.data() + got, body.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    body.resize(got);
    Json j = Json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return R::failure(path + " is not a token store (not JSON)");
    auto text = [&](const char* name) {
        auto it = j.find(name);
        return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    StoredTokens t{text("account"), text("scope"), text("refresh_token"), text("access_token"),
                   from_millis(j, "access_expires"), from_millis(j, "authorised_at"), from_millis(j, "refreshed_at")};
    if ((!t.refresh_token.empty() && !plausible_token(t.refresh_token)) ||
        (!t.access_token.empty() && !plausible_token(t.access_token))) {
        return R::failure(path + " holds a token with blanks or characters outside ASCII");
    }
    return std::optional<StoredTokens>(std::move(t));
}

Status write_token_store(const std::string& path, const StoredTokens& t) {
    Json j{{"account", t.account},
           {"scope", t.scope},
           {"refresh_token", t.refresh_token},
           {"access_token", t.access_token},
           {"access_expires", millis(t.access_expires)},
           {"authorised_at", millis(t.authorised_at)},
           {"refreshed_at", millis(t.refreshed_at)}};
    // token_store is absolute (checked at load).
    return replace_file_durably(path, j.dump(2) + "\n", 0600);
}

}  // namespace relayguard
