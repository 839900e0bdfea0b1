// Reading an MTA's own domains; see the header.
#include "common/mta/mta_domains.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/base/program_output.h"

namespace relayguard {

namespace {

constexpr std::chrono::milliseconds helper_timeout{30'000};
// A virtual table of a large host runs to some megabytes; past this the
// helper is stopped rather than relayguard's memory taken.
constexpr std::size_t helper_output_limit = 64u << 20;
// "/file" lists may name further files; no deeper than this.
constexpr int max_file_depth = 3;

const char* const postfix_domain_lists[] = {"mydestination", "virtual_alias_domains", "virtual_mailbox_domains",
                                            "relay_domains"};

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string first_line(const std::string& text) {
    auto end = text.find('\n');
    std::string line = text.substr(0, end);
    return line.empty() ? "no message" : line;
}

bool is_table_type(std::string_view word) {
    auto colon = word.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    return std::all_of(word.begin(), word.begin() + static_cast<long>(colon),
                       [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

// The file a table's data lives in, by its type: what to watch for changes.
std::string table_file(const std::string& type, const std::string& name) {
    if (type == "hash" || type == "btree") return name + ".db";
    if (type == "lmdb") return name + ".lmdb";
    if (type == "cdb") return name + ".cdb";
    if (type == "dbm" || type == "sdbm") return name + ".pag";
    if (type == "texthash") return name;
    return "";
}

bool listable(const std::string& type) {
    static const std::set<std::string> types{"hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash", "inline"};
    return types.count(type) > 0;
}

std::vector<std::string> words_of_file(const std::string& path, bool& readable) {
    std::ifstream in(path);
    readable = static_cast<bool>(in);
    std::vector<std::string> words;
    std::string line;
    while (std::getline(in, line)) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        for (auto& w : split_postfix_list(line)) words.push_back(std::move(w));
    }
    return words;
}

// One Postfix domain list, item by item, into `out`.
class PostfixReader {
public:
    PostfixReader(std::string config_dir, MtaDomains& out) : dir_(std::move(config_dir)), out_(out) {}

    // Items of `where`; `subdomains`: Postfix matches the list's domains'
    // subdomains too (parent_domain_matches_subdomains names it).
    void item(const std::string& raw, const std::string& where, int depth, bool subdomains) {
        subdomains_ = subdomains;
        item(raw, where, depth);
    }

private:
    void item(const std::string& raw, const std::string& where, int depth) {
        if (raw.empty()) return;
        if (raw[0] == '!') {
            out_.unreadable.push_back(raw + " (" + where + "): an exclusion; relayguard cannot subtract it");
        } else if (raw[0] == '/') {
            file(raw, where, depth);
        } else if (is_table_type(raw)) {
            table(raw, where);
        } else {
            out_.domains.push_back({lower(raw), subdomains_});
        }
    }

    void file(const std::string& path, const std::string& where, int depth) {
        out_.watched.push_back(path);
        if (depth >= max_file_depth) {
            out_.unreadable.push_back(path + " (" + where + "): files nested too deep");
            return;
        }
        bool readable = false;
        auto words = words_of_file(path, readable);
        if (!readable) {
            out_.unreadable.push_back(path + " (" + where + "): cannot be read");
            return;
        }
        for (const auto& w : words) item(w, where, depth + 1);
    }

    void table(const std::string& spec, const std::string& where) {
        std::string inner = spec;
        while (inner.rfind("proxy:", 0) == 0) inner = inner.substr(6);
        auto colon = inner.find(':');
        std::string type = inner.substr(0, colon), name = colon == std::string::npos ? "" : inner.substr(colon + 1);
        if (!listable(type)) {
            const char* why = type == "cidr" ? "holds networks, not domains"
                                             : "its entries cannot be listed (postmap -s does not read it)";
            out_.unreadable.push_back(spec + " (" + where + "): " + why);
            return;
        }
        if (auto f = table_file(type, name); !f.empty()) out_.watched.push_back(f);
        std::vector<std::string> argv{"postmap"};
        if (!dir_.empty()) argv.insert(argv.end(), {"-c", dir_});
        argv.insert(argv.end(), {"-s", inner});
        auto ran = run_program(argv, helper_timeout, helper_output_limit);
        if (!ran) {
            out_.unreadable.push_back(spec + " (" + where + "): " + ran.error());
            return;
        }
        if (ran->exit_status != 0) {
            out_.unreadable.push_back(spec + " (" + where + "): postmap -s failed: " + first_line(ran->err));
            return;
        }
        for (auto& key : domain_keys(ran->out)) out_.domains.push_back({std::move(key), subdomains_});
    }

    std::string dir_;
    MtaDomains& out_;
    bool subdomains_ = false;
};

Result<MtaDomains> read_postfix(const std::string& dir) {
    using R = Result<MtaDomains>;
    std::vector<std::string> argv{"postconf"};
    if (!dir.empty()) argv.insert(argv.end(), {"-c", dir});
    argv.push_back("-x");
    for (const char* name : postfix_domain_lists) argv.emplace_back(name);
    argv.emplace_back("parent_domain_matches_subdomains");
    auto ran = run_program(argv, helper_timeout, helper_output_limit);
    if (!ran) return R::failure(ran.error());
    if (ran->exit_status != 0) return R::failure("postconf failed: " + first_line(ran->err));
    MtaDomains out;
    out.watched.push_back((dir.empty() ? std::string("/etc/postfix") : dir) + "/main.cf");
    std::map<std::string, std::string> values;
    std::istringstream lines(ran->out);
    std::string line;
    while (std::getline(lines, line)) {
        auto eq = line.find(" =");
        if (eq == std::string::npos) return R::failure("postconf printed an unexpected line: " + line);
        values[line.substr(0, eq)] = eq + 3 <= line.size() ? line.substr(eq + 3) : std::string();
    }
    // By default relay_domains is listed there: "example.org" in it also
    // covers mail.example.org.
    auto parents = split_postfix_list(values["parent_domain_matches_subdomains"]);
    PostfixReader reader(dir, out);
    for (const char* name : postfix_domain_lists) {
        bool subdomains = std::find(parents.begin(), parents.end(), name) != parents.end();
        for (const auto& item : split_postfix_list(values[name])) reader.item(item, name, 0, subdomains);
    }
    return out;
}

Result<MtaDomains> read_sendmail(const std::string& cf_path) {
    using R = Result<MtaDomains>;
    std::string path = cf_path.empty() ? "/etc/mail/sendmail.cf" : cf_path;
    std::ifstream in(path);
    if (!in) return R::failure("cannot read " + path);
    std::stringstream text;
    text << in.rdbuf();
    auto sources = parse_sendmail_cf(text.str());
    MtaDomains out;
    out.watched.push_back(path);
    for (const auto& n : sources.local_names) out.domains.push_back({lower(n), false});
    // Sendmail puts its own name ($j) into class w itself.
    if (!sources.own_name.empty()) out.domains.push_back({lower(sources.own_name), false});
    // Sendmail relays for a relay-domains entry and every subdomain of it.
    for (const auto& n : sources.relay_names) out.domains.push_back({lower(n), true});
    auto from_files = [&](const std::vector<SendmailDomainSources::File>& files, bool subdomains) {
        for (const auto& [f, optional] : files) {
            if (f.empty() || f[0] != '/') {
                out.unreadable.push_back(f + " (sendmail.cf): not a file relayguard can read");
                continue;
            }
            out.watched.push_back(f);
            std::ifstream list(f);
            if (!list) {
                // An optional (-o) file that is not there Sendmail skips too.
                if (!optional || ::access(f.c_str(), F_OK) == 0) {
                    out.unreadable.push_back(f + " (sendmail.cf): cannot be read");
                }
                continue;
            }
            std::string line;
            while (std::getline(list, line)) {
                if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
                std::istringstream words(line);
                std::string w;
                while (words >> w) out.domains.push_back({lower(w), subdomains});
            }
        }
    };
    from_files(sources.local_files, false);
    from_files(sources.relay_files, true);
    return out;
}

}  // namespace

std::vector<std::string> split_postfix_list(std::string_view value) {
    std::vector<std::string> items;
    std::string current;
    int depth = 0;
    for (char c : value) {
        if (c == '{') ++depth;
        if (c == '}' && depth > 0) --depth;
        if (depth == 0 && (c == ',' || std::isspace(static_cast<unsigned char>(c)))) {
            if (!current.empty()) items.push_back(std::move(current));
            current.clear();
            continue;
        }
        current += c;
    }
    if (!current.empty()) items.push_back(std::move(current));
    return items;
}

std::vector<std::string> domain_keys(std::string_view postmap_output) {
    std::vector<std::string> keys;
    std::size_t start = 0;
    while (start < postmap_output.size()) {
        auto end = postmap_output.find('\n', start);
        if (end == std::string_view::npos) end = postmap_output.size();
        auto line = postmap_output.substr(start, end - start);
        start = end + 1;
        auto key = line.substr(0, line.find_first_of(" \t"));
        if (key.empty() || key.find('@') != std::string_view::npos) continue;
        keys.push_back(lower(std::string(key)));
    }
    return keys;
}

SendmailDomainSources parse_sendmail_cf(std::string_view text) {
    SendmailDomainSources s;
    std::size_t start = 0;
    while (start < text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string line(text.substr(start, end - start));
        start = end + 1;
        if (line.rfind("Dj", 0) == 0) {
            // $j, the host's own name, unless it is built from other macros.
            std::string name = line.substr(2);
            if (!name.empty() && name.find('$') == std::string::npos) s.own_name = name;
            continue;
        }
        if (line.size() < 2 || (line[0] != 'C' && line[0] != 'F')) continue;
        // The class: one letter ("Cw") or a name in braces ("C{w}", as m4's LOCAL_DOMAIN writes it).
        std::string cls, rest;
        if (line[1] == '{') {
            auto close = line.find('}');
            if (close == std::string::npos) continue;
            cls = line.substr(2, close - 2);
            rest = line.substr(close + 1);
        } else {
            cls = line.substr(1, 1);
            rest = line.substr(2);
        }
        if (cls != "w" && cls != "R") continue;
        bool local = cls == "w";
        if (line[0] == 'C') {
            std::istringstream words(rest);
            std::string w;
            while (words >> w) (local ? s.local_names : s.relay_names).push_back(w);
            continue;
        }
        // F: "-o" marks an optional file; a scanf format may follow the path.
        std::istringstream words(rest);
        std::string w;
        words >> w;
        bool optional = w.rfind("-o", 0) == 0;
        if (w == "-o") words >> w;
        else if (optional) w = w.substr(2);
        if (!w.empty()) (local ? s.local_files : s.relay_files).push_back({w, optional});
    }
    return s;
}

Result<MtaDomains> read_mta_domains(MtaKind kind, const std::string& config) {
    return kind == MtaKind::postfix ? read_postfix(config) : read_sendmail(config);
}

std::string files_fingerprint(const std::vector<std::string>& files) {
    std::string print;
    for (const auto& f : files) {
        struct stat st {};
        print += f;
        if (::stat(f.c_str(), &st) == 0) {
            print += ":" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ":" +
                     std::to_string(st.st_size) + ":" + std::to_string(st.st_ino);
        } else {
            print += ":-";
        }
        print += "\n";
    }
    return print;
}

}  // namespace relayguard
