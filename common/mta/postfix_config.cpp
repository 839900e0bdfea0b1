// Reading Postfix's effective configuration; see the header.
#include "common/mta/postfix_config.h"

#include <sstream>

#include "common/base/program_output.h"

namespace relayguard {

namespace {

constexpr std::chrono::milliseconds postconf_timeout{30'000};
constexpr std::size_t postconf_output_limit = 16u << 20;

Result<std::string> postconf(const std::string& dir, std::vector<std::string> flags) {
    std::vector<std::string> argv{"postconf"};
    if (!dir.empty()) argv.insert(argv.end(), {"-c", dir});
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto ran = run_program(argv, postconf_timeout, postconf_output_limit);
    if (!ran) return Result<std::string>::failure(ran.error());
    if (ran->exit_status != 0) {
        std::string why = ran->err.substr(0, ran->err.find('\n'));
        return Result<std::string>::failure("postconf failed: " + (why.empty() ? std::string("no message") : why));
    }
    return std::move(ran->out);
}

void each_line(std::string_view text, const auto& f) {
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        f(text.substr(start, end - start));
        start = end + 1;
    }
}

std::string trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos) return "";
    auto e = s.find_last_not_of(" \t");
    return std::string(s.substr(b, e - b + 1));
}

}  // namespace

std::string PostfixConfig::value(const std::string& param, const std::string& service) const {
    if (!service.empty()) {
        if (auto s = overrides.find(service); s != overrides.end()) {
            if (auto p = s->second.find(param); p != s->second.end()) return p->second;
        }
    }
    auto p = params.find(param);
    return p == params.end() ? std::string() : p->second;
}

void parse_postconf_params(std::string_view text, std::map<std::string, std::string>& params) {
    each_line(text, [&](std::string_view line) {
        auto eq = line.find('=');
        if (eq == std::string_view::npos) return;
        params[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
    });
}

void parse_postconf_overrides(std::string_view text,
                              std::map<std::string, std::map<std::string, std::string>>& overrides) {
    each_line(text, [&](std::string_view line) {
        auto eq = line.find('=');
        if (eq == std::string_view::npos) return;
        std::string key = trim(line.substr(0, eq));
        auto slash = key.rfind('/');
        if (slash == std::string::npos) return;
        overrides[key.substr(0, slash)][key.substr(slash + 1)] = trim(line.substr(eq + 1));
    });
}

std::vector<MasterService> parse_master_services(std::string_view text) {
    std::vector<MasterService> services;
    each_line(text, [&](std::string_view line) {
        std::istringstream words{std::string(line)};
        std::vector<std::string> w;
        std::string word;
        while (words >> word) w.push_back(word);
        // name type private unpriv chroot wakeup maxproc command [args]
        if (w.size() < 8 || w[0][0] == '#') return;
        services.push_back({w[0], w[1], w[7]});
    });
    return services;
}

Result<PostfixConfig> read_postfix_config(const std::string& dir) {
    using R = Result<PostfixConfig>;
    PostfixConfig c;
    c.dir = dir;
    auto params = postconf(dir, {"-x"});
    if (!params) return R::failure(params.error());
    parse_postconf_params(*params, c.params);
    auto overrides = postconf(dir, {"-P", "-x"});
    if (!overrides) return R::failure(overrides.error());
    parse_postconf_overrides(*overrides, c.overrides);
    auto master = postconf(dir, {"-M"});
    if (!master) return R::failure(master.error());
    c.services = parse_master_services(*master);
    return c;
}

}  // namespace relayguard
