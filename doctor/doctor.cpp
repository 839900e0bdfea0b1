// The doctor's command line and report; the checks are in doctor_checks.
#include "doctor/doctor.h"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/mta/mta_domains.h"
#include "common/mta/postfix_config.h"
#include "conf/config.h"
#include "doctor/doctor_checks.h"

namespace relayguard {

namespace {

constexpr int exit_ok = 0, exit_warnings = 1, exit_errors = 2, exit_usage = 64;
constexpr const char* packaged_config = "/etc/relayguard/relayguard.toml";

int usage(std::ostream& to, int status) {
    to << "usage: relayguard doctor [--config FILE] [--postfix DIR | --sendmail-cf FILE] [--json | --summary]\n"
          "\n"
          "Checks how Postfix (or Sendmail) is wired to relayguard and prints each problem with\n"
          "the line that mends it, then the postconf commands that apply the mends.\n"
          "  --config FILE       relayguard's config (default " << packaged_config << " if present,\n"
          "                      else the embedded default)\n"
          "  --postfix DIR       Postfix's configuration directory (default: Postfix's own)\n"
          "  --sendmail-cf FILE  check Sendmail's sendmail.cf instead\n"
          "  --json              the findings as one JSON object\n"
          "  --summary           one line per finding, no fixes\n"
          "Exit status: 0 nothing found, 1 warnings only, 2 errors.\n";
    return status;
}

struct Report {
    std::string mta, mta_config, config;
    std::vector<Finding> findings;
    std::vector<std::string> commands;
    std::string reload;
    int errors = 0, warnings = 0;
    int status() const { return errors ? exit_errors : warnings ? exit_warnings : exit_ok; }
};

const char* severity_name(Severity s) { return s == Severity::error ? "error" : "warning"; }

void print_text(const Report& r, bool summary) {
    if (summary) {
        for (const auto& f : r.findings) {
            std::cout << "relayguard doctor: " << severity_name(f.severity) << " " << f.id << ": " << f.message << "\n";
        }
        std::cout << "relayguard doctor: " << r.errors << " error(s), " << r.warnings << " warning(s)"
                  << (r.findings.empty() ? "" : "; run `relayguard doctor` for the fixes") << "\n";
        return;
    }
    std::cout << "relayguard doctor: " << r.mta << " (" << r.mta_config << ") with " << r.config << "\n\n";
    for (const auto& f : r.findings) {
        std::cout << (f.severity == Severity::error ? "ERROR   " : "WARNING ") << f.id << ": " << f.message << "\n"
                  << "        fix: " << f.fix << "\n";
        if (!f.command.empty()) std::cout << "        run: " << f.command << "\n";
        std::cout << "\n";
    }
    if (r.findings.empty()) {
        std::cout << "No problems found: relayguard is wired into " << r.mta << " as it should be.\n";
        return;
    }
    std::cout << r.errors << " error(s), " << r.warnings << " warning(s).\n";
    if (!r.commands.empty()) {
        std::cout << "\nThe snippet for this " << r.mta << ": as root, run\n";
        for (const auto& c : r.commands) std::cout << "  " << c << "\n";
        std::cout << "  " << r.reload << "\n";
    }
}

void print_json(const Report& r) {
    nlohmann::json j;
    j["mta"] = r.mta;
    j["mta_config"] = r.mta_config;
    j["config"] = r.config;
    j["errors"] = r.errors;
    j["warnings"] = r.warnings;
    j["status"] = r.status();
    j["findings"] = nlohmann::json::array();
    for (const auto& f : r.findings) {
        j["findings"].push_back({{"severity", severity_name(f.severity)},
                                 {"id", f.id},
                                 {"message", f.message},
                                 {"fix", f.fix},
                                 {"command", f.command}});
    }
    j["commands"] = r.commands;
    j["reload"] = r.reload;
    std::cout << j.dump(2) << "\n";
}

}  // namespace

int run_doctor(const std::vector<std::string>& args) {
    std::string config_path, postfix_dir, sendmail_cf;
    bool json = false, summary = false, config_given = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const auto& a = args[i];
        auto value = [&](std::string& into) {
            if (i + 1 >= args.size()) return false;
            into = args[++i];
            return true;
        };
        if (a == "--config" || a == "-c") {
            if (!value(config_path)) return usage(std::cerr, exit_usage);
            config_given = true;
        } else if (a == "--postfix") {
            if (!value(postfix_dir)) return usage(std::cerr, exit_usage);
        } else if (a == "--sendmail-cf") {
            if (!value(sendmail_cf)) return usage(std::cerr, exit_usage);
        } else if (a == "--json") {
            json = true;
        } else if (a == "--summary") {
            summary = true;
        } else if (a == "--help" || a == "-h") {
            return usage(std::cout, exit_ok);
        } else {
            std::cerr << "relayguard doctor: unknown argument '" << a << "'\n";
            return usage(std::cerr, exit_usage);
        }
    }
    if (!config_given && ::access(packaged_config, F_OK) == 0) {
        // Never the example in its place: its domains and sockets are not this host's.
        if (::access(packaged_config, R_OK) != 0) {
            std::cerr << "relayguard doctor: cannot read " << packaged_config
                      << " (it is 0640 root:relayguard): run as root or pass --config\n";
            return exit_errors;
        }
        config_path = packaged_config;
    }
    auto loaded = load_config(config_path);
    if (!loaded.config) {
        for (const auto& e : loaded.errors) std::cerr << "relayguard doctor: " << e.to_string() << "\n";
        return exit_errors;
    }
    const Config& config = *loaded.config;

    Report r;
    r.config = config_path.empty() ? std::string("the embedded default config") : config_path;
    if (!sendmail_cf.empty()) {
        r.mta = "Sendmail";
        r.mta_config = sendmail_cf;
        std::ifstream in(sendmail_cf);
        if (!in) {
            std::cerr << "relayguard doctor: cannot read " << sendmail_cf << "\n";
            return exit_errors;
        }
        std::stringstream text;
        text << in.rdbuf();
        auto domains = read_mta_domains(MtaKind::sendmail, sendmail_cf);
        r.findings = check_sendmail(text.str(), config, domains ? &*domains : nullptr);
        r.reload = "";
    } else {
        // The Postfix whose domains relayguard reads, unless told otherwise.
        if (postfix_dir.empty() && config.local_domains.from == DomainsFrom::postfix) {
            postfix_dir = config.local_domains.mta_config;
        }
        r.mta = "Postfix";
        r.mta_config = postfix_dir.empty() ? std::string("/etc/postfix") : postfix_dir;
        auto postfix = read_postfix_config(postfix_dir);
        if (!postfix) {
            std::cerr << "relayguard doctor: cannot read Postfix's configuration in " << r.mta_config << ": "
                      << postfix.error() << "\n";
            return exit_errors;
        }
        auto domains = read_mta_domains(MtaKind::postfix, postfix_dir);
        if (!domains && config.local_domains.from == DomainsFrom::postfix) {
            r.findings.push_back({Severity::error, "domains-unreadable",
                                  "relay.local_domains_from = \"postfix\", but Postfix's domains cannot be read: " +
                                      domains.error() + "; relayguard will not start",
                                  "mend what postconf says", ""});
        }
        auto found = check_postfix(*postfix, config, domains ? &*domains : nullptr);
        r.findings.insert(r.findings.end(), found.begin(), found.end());
        r.reload = postfix_dir.empty() ? "postfix reload" : "postfix -c " + shell_quoted(postfix_dir) + " reload";
    }
    for (const auto& f : r.findings) {
        (f.severity == Severity::error ? r.errors : r.warnings)++;
        if (!f.command.empty() &&
            std::find(r.commands.begin(), r.commands.end(), f.command) == r.commands.end()) {
            r.commands.push_back(f.command);
        }
    }
    if (json) print_json(r);
    else print_text(r, summary);
    return r.status();
}

}  // namespace relayguard
