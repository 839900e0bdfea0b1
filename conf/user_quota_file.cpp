// Per-account quota overrides; see the header.
#include "conf/user_quota_file.h"

#include <charconv>
#include <fstream>
#include <map>
#include <sstream>

#include "policy/domain_set.h"

namespace relayguard {

namespace {

// One line as written: the limits it names, each a number or off.
struct Named {
    std::map<std::string, std::optional<std::uint32_t>> limits;
};

UserQuota overlaid(UserQuota base, const Named& line) {
    for (const auto& [key, value] : line.limits) {
        if (key == "messages_per_hour") base.messages_per_hour = value;
        else if (key == "messages_per_day") base.messages_per_day = value;
        else base.recipients_per_day = value;
    }
    return base;
}

// Why `word` ("key=value") is not a quota, or "" with `key` and `value` set.
std::string parse_word(const std::string& word, std::string& key, std::optional<std::uint32_t>& value) {
    auto eq = word.find('=');
    if (eq == std::string::npos) return "expected key=value, got \"" + word + "\"";
    key = word.substr(0, eq);
    if (key != "messages_per_hour" && key != "messages_per_day" && key != "recipients_per_day") {
        return "unknown quota \"" + key + "\" (messages_per_hour, messages_per_day, recipients_per_day)";
    }
    std::string text = word.substr(eq + 1);
    if (text == "off") {
        value.reset();
        return "";
    }
    std::uint32_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end != text.data() + text.size() || n == 0 || n > 100'000'000u) {
        return key + ": expected a number from 1 to 100000000 or off, got \"" + text + "\"";
    }
    value = n;
    return "";
}

}  // namespace

void read_user_quota_file(UserQuotaSettings& quotas, std::vector<ConfigError>& errors, const std::string& config_file,
                          int config_line) {
    const std::string& path = quotas.overrides_file;
    std::ifstream in(path);
    if (!in) {
        errors.push_back({config_file, config_line, "limits.user_quotas.overrides_file", "cannot read \"" + path + "\""});
        return;
    }
    std::map<std::string, Named> users, domains;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        std::istringstream words(line);
        std::string name;
        if (!(words >> name)) continue;
        name = DomainSet::normalise(name);
        bool domain = name.size() > 1 && name.front() == '@';
        auto& table = domain ? domains : users;
        std::string key_name = domain ? name.substr(1) : name;
        if (name == "@" || (domain && key_name.find('@') != std::string::npos)) {
            errors.push_back({path, n, "", "\"" + name + "\" is neither an account nor @domain"});
            continue;
        }
        if (table.count(key_name)) {
            errors.push_back({path, n, "", "\"" + name + "\" has a line already"});
            continue;
        }
        Named parsed;
        bool ok = true;
        for (std::string word; words >> word;) {
            std::string key;
            std::optional<std::uint32_t> value;
            if (auto why = parse_word(word, key, value); !why.empty()) {
                errors.push_back({path, n, "", why});
                ok = false;
                break;
            }
            parsed.limits[key] = value;
        }
        if (ok && parsed.limits.empty()) {
            errors.push_back({path, n, "", "\"" + name + "\" names no quota"});
            ok = false;
        }
        if (ok) table.emplace(key_name, std::move(parsed));
    }
    for (const auto& [domain, named] : domains) quotas.domains[domain] = overlaid(quotas.defaults, named);
    for (const auto& [user, named] : users) {
        UserQuota base = quotas.defaults;
        auto at = user.rfind('@');
        if (at != std::string::npos) {
            if (auto d = quotas.domains.find(user.substr(at + 1)); d != quotas.domains.end()) base = d->second;
        }
        quotas.users[user] = overlaid(base, named);
    }
}

}  // namespace relayguard
