// The memory store's snapshot: one line per item, fields separated by
// spaces, every name hex-encoded (client keys, recipients and login guesses
// come from outside and may hold any byte), times in ms since the epoch:
//   relayguard-memory-store 1
//   client HEX_KEY BLOCKED_UNTIL BLOCK_KIND IDLE_AFTER
//   message T                  (of the client above)
//   unknown T HEX_RECIPIENT    (of the client above)
//   login T HEX_GUESS          (of the client above)
//   bar HEX_ADDRESS UNTIL      (a failed AUTH's bar on trusted groups)
// Nothing in it is a secret: a login guess is the user and a hash of the
// password, as the store keeps it.
#include "policy/memory_counter_store.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <sstream>
#include <vector>

namespace relayguard {

namespace {

constexpr std::string_view magic = "relayguard-memory-store 1";

std::string hex(std::string_view s) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() * 2 + 1);
    for (unsigned char c : s) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out.empty() ? "-" : out;  // an empty name still makes a field
}

std::optional<std::string> unhex(std::string_view s) {
    if (s == "-") return std::string();
    if (s.size() % 2 != 0) return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < s.size(); i += 2) {
        unsigned v = 0;
        auto [end, ec] = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
        if (ec != std::errc() || end != s.data() + i + 2) return std::nullopt;
        out += static_cast<char>(v);
    }
    return out;
}

std::int64_t ms(TimePoint t) { return t.time_since_epoch().count(); }

std::optional<TimePoint> time_field(std::string_view s) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return TimePoint(Duration(v));
}

std::vector<std::string_view> fields(std::string_view line) {
    std::vector<std::string_view> out;
    while (!line.empty()) {
        auto space = line.find(' ');
        out.push_back(line.substr(0, space));
        if (space == std::string_view::npos) break;
        line.remove_prefix(space + 1);
    }
    return out;
}

}  // namespace

std::string MemoryCounterStore::snapshot(TimePoint now) const {
    std::lock_guard lock(mutex_);
    std::ostringstream out;
    out << magic << "\n";
    for (const auto& [key, c] : clients_) {
        if (c.idle_after <= now && c.blocked_until <= now) continue;  // nothing in it can matter any more
        out << "client " << hex(key) << " " << ms(c.blocked_until) << " "
            << (c.blocked_for == GuessKind::failed_login ? 1 : 0) << " " << ms(c.idle_after) << "\n";
        for (auto t : c.messages) out << "message " << ms(t) << "\n";
        for (const auto& [rcpt, t] : c.unknown) out << "unknown " << ms(t) << " " << hex(rcpt) << "\n";
        for (const auto& [guess, t] : c.failed_logins) out << "login " << ms(t) << " " << hex(guess) << "\n";
    }
    for (const auto& [address, until] : failed_auth_) {
        if (until > now) out << "bar " << hex(address) << " " << ms(until) << "\n";
    }
    return out.str();
}

Result<MemoryCounterStore::Restored> MemoryCounterStore::restore(std::string_view text, TimePoint now) {
    using R = Result<Restored>;
    // Parsed whole before anything is added: a bad file changes nothing.
    struct Client {
        std::string key;
        ClientEntry entry;
    };
    std::vector<Client> parsed;
    std::vector<std::pair<std::string, TimePoint>> bars;
    std::size_t number = 0;
    bool headed = false;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++number;
        auto bad = [&] { return R::failure("line " + std::to_string(number) + " is not part of a snapshot"); };
        if (!headed) {
            if (line != magic) return R::failure("not a relayguard memory-store snapshot (line 1)");
            headed = true;
            continue;
        }
        if (line.empty()) continue;
        auto f = fields(line);
        if (f[0] == "client" && f.size() == 5) {
            auto key = unhex(f[1]);
            auto blocked = time_field(f[2]);
            auto idle = time_field(f[4]);
            if (!key || !blocked || !idle || (f[3] != "0" && f[3] != "1")) return bad();
            Client c{*key, {}};
            c.entry.blocked_until = *blocked;
            c.entry.blocked_for = f[3] == "1" ? GuessKind::failed_login : GuessKind::unknown_recipient;
            c.entry.idle_after = *idle;
            parsed.push_back(std::move(c));
        } else if (f[0] == "message" && f.size() == 2 && !parsed.empty()) {
            auto t = time_field(f[1]);
            if (!t) return bad();
            parsed.back().entry.messages.push_back(*t);
        } else if ((f[0] == "unknown" || f[0] == "login") && f.size() == 3 && !parsed.empty()) {
            auto t = time_field(f[1]);
            auto name = unhex(f[2]);
            if (!t || !name) return bad();
            (f[0] == "unknown" ? parsed.back().entry.unknown : parsed.back().entry.failed_logins)[*name] = *t;
        } else if (f[0] == "bar" && f.size() == 3) {
            auto address = unhex(f[1]);
            auto until = time_field(f[2]);
            if (!address || !until) return bad();
            bars.emplace_back(*address, *until);
        } else {
            return bad();
        }
    }
    if (!headed) return R::failure("empty: not a relayguard memory-store snapshot");
    Restored done;
    std::lock_guard lock(mutex_);
    for (auto& c : parsed) {
        if (c.entry.idle_after <= now && c.entry.blocked_until <= now) continue;
        if (clients_.size() >= max_clients_ && !clients_.count(c.key)) break;  // the table's bound holds
        std::sort(c.entry.messages.begin(), c.entry.messages.end());
        c.entry.last_use = ++use_count_;
        done.blocks += c.entry.blocked_until > now;
        ++done.clients;
        clients_[c.key] = std::move(c.entry);
    }
    for (auto& [address, until] : bars) {
        if (until > now) failed_auth_[address] = until;
    }
    return done;
}

}  // namespace relayguard
