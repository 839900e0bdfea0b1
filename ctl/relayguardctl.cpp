// relayguardctl: the admin's command for a running relayguard, over its
// admin socket (see plugin/ops/admin_server.h for the requests). The daemon
// answers one line of JSON; this prints its "text" for people, or the whole
// object with --json.
//
//   relayguardctl [--socket PATH] [--json] ping | status | reload
//   relayguardctl [--socket PATH] [--json] ip show ADDR | ip unblock ADDR | ip reset ADDR
//   relayguardctl [--socket PATH] [--json] pop grant ADDR [--user NAME] [--minutes N]
//   relayguardctl [--socket PATH] [--json] pop show ADDR | pop list
//   relayguardctl [--socket PATH] [--json] user show USER | user clear USER
//   relayguardctl [--socket PATH] [--postfix-config DIR] user release USER
//   relayguardctl [--relayd-socket PATH] [--json] queue list | show ID | flush [ID] | delete ID | bounce ID
//   relayguardctl [--relayd-socket PATH] [--json] reload relayd
//   relayguardctl [--relayd-socket PATH] [--json] oauth login | oauth status
//
// Exit status: 0 done, 1 the daemon refused the request, 2 reloaded but
// some changes need a restart (the reply names them), 64 bad usage,
// 69 the daemon cannot be reached, 77 permission denied on the socket.
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/base/unique_fd.h"
#include "common/base/version.h"

extern char** environ;

namespace {

constexpr int exit_refused = 1;
constexpr int exit_restart_needed = 2;  // reloaded, but some changes apply only after a restart
constexpr int exit_usage = 64;
constexpr int exit_unavailable = 69;
constexpr int exit_noperm = 77;
constexpr const char* default_socket = "/run/relayguard/admin.sock";
constexpr const char* default_relayd_socket = "/run/relayguard/relayd.sock";

void print_usage(std::ostream& to) {
    to << "usage: relayguardctl [--socket PATH] [--json] ping | status | reload\n"
          "       relayguardctl [--socket PATH] [--json] ip show ADDR | ip unblock ADDR | ip reset ADDR\n"
          "       relayguardctl [--socket PATH] [--json] pop grant ADDR [--user NAME] [--minutes N]\n"
          "       relayguardctl [--socket PATH] [--json] pop show ADDR | pop list\n"
          "       relayguardctl [--socket PATH] [--json] user show USER | user clear USER\n"
          "       relayguardctl [--socket PATH] [--postfix-config DIR] user release USER\n"
          "       relayguardctl [--relayd-socket PATH] [--json] queue list | show ID | flush [ID] | delete ID | bounce ID\n"
          "       relayguardctl [--relayd-socket PATH] [--json] reload relayd\n"
          "       relayguardctl [--relayd-socket PATH] [--json] oauth login | oauth status\n"
          "       relayguardctl --help | --version\n"
          "The sockets default to "
       << default_socket << " (listen.admin) and " << default_relayd_socket << " (delivery.admin).\n";
}

int usage() {
    print_usage(std::cerr);
    return exit_usage;
}

bool clean_word(const std::string& w) {
    if (w.empty()) return false;
    for (unsigned char c : w) {
        if (c < 0x21 || c == 0x7f) return false;
    }
    return true;
}

// Where a request goes: its line, the socket, and the daemon's name.
struct Request {
    std::string line;
    std::string socket;
    std::string daemon = "relayguard";
    int timeout_s = 3;  // for the reply
};

// The request line the words ask for; std::nullopt when they are not one.
std::optional<Request> request_for(const std::vector<std::string>& args, const std::string& socket,
                                   const std::string& relayd_socket) {
    Request r{"", socket};
    auto to_relayd = [&](std::string line) { return Request{std::move(line), relayd_socket, "relayguard-relayd"}; };
    if (!args.empty() && args[0] == "queue" && args.size() >= 2 && args.size() <= 3) {
        std::string line = "queue";  // the relay client's queue
        for (std::size_t i = 1; i < args.size(); ++i) line += " " + args[i];
        return to_relayd(line);
    }
    if (args.size() == 2 && args[0] == "reload" && args[1] == "relayd") return to_relayd("reload");
    if (args.size() == 2 && args[0] == "oauth" && (args[1] == "login" || args[1] == "status")) {
        Request oauth = to_relayd("oauth " + args[1]);
        if (args[1] == "login") oauth.timeout_s = 70;  // the relay client asks the provider before it answers
        return oauth;
    }
    if (args.size() == 1 && (args[0] == "ping" || args[0] == "reload" || args[0] == "status")) r.line = args[0];
    else if (args.size() == 3 && args[0] == "ip" && (args[1] == "show" || args[1] == "unblock" || args[1] == "reset")) r.line = "ip " + args[1] + " " + args[2];
    else if (args.size() == 2 && args[0] == "pop" && args[1] == "list") r.line = "pop list";
    else if (args.size() == 3 && args[0] == "user" && (args[1] == "show" || args[1] == "release" || args[1] == "clear")) {
        r.line = "user " + args[1] + " " + args[2];
    }
    else if (args.size() == 3 && args[0] == "pop" && args[1] == "show") r.line = "pop show " + args[2];
    else if (args.size() >= 3 && args[0] == "pop" && args[1] == "grant") {
        r.line = "pop grant " + args[2];
        for (std::size_t i = 3; i < args.size(); ++i) {
            if (args[i] == "--user" && i + 1 < args.size()) {
                // A hook passes what the POP server says; an empty user is none.
                if (!args[++i].empty()) r.line += " user=" + args[i];
            } else if (args[i] == "--minutes" && i + 1 < args.size()) {
                r.line += " for=" + args[++i] + "m";
            } else {
                return std::nullopt;
            }
        }
    } else {
        return std::nullopt;
    }
    return r;
}

// Sends the request and reads the whole reply into `reply`; answers 0 or
// the exit status, having said why.
int send_request(const Request& r, std::string& reply) {
    relayguard::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (r.socket.size() >= sizeof sun.sun_path) {
        std::cerr << "relayguardctl: socket path too long: " << r.socket << "\n";
        return exit_usage;
    }
    std::strncpy(sun.sun_path, r.socket.c_str(), sizeof sun.sun_path - 1);
    timeval tv{r.timeout_s, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
        int err = errno;
        std::cerr << "relayguardctl: cannot reach " << r.daemon << " at " << r.socket << ": " << std::strerror(err);
        if (err == EACCES || err == EPERM) {
            std::cerr << " (the socket's group, listen.socket_group, must be one of yours)\n";
            return exit_noperm;
        }
        std::cerr << " (is " << r.daemon << " running, with "
                  << (r.daemon == "relayguard" ? "listen.admin" : "delivery.admin") << " set to this socket?)\n";
        return exit_unavailable;
    }
    std::string line = r.line + "\n";
    if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
        std::cerr << "relayguardctl: could not send the request: " << std::strerror(errno) << "\n";
        return exit_unavailable;
    }
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd.get(), buf, sizeof buf, 0)) > 0;) reply.append(buf, static_cast<std::size_t>(n));
    return 0;
}

// Prints the daemon's answer: its "text" for people, or the JSON.
int print_answer(const Request& r, const std::string& reply, bool json) {
    auto answer = nlohmann::json::parse(reply, nullptr, false);
    if (answer.is_discarded() || !answer.is_object() || !answer.contains("ok")) {
        std::cerr << "relayguardctl: no answer from " << r.daemon << " at " << r.socket << "\n";
        return exit_unavailable;
    }
    bool ok = answer.value("ok", false);
    if (json) {
        answer.erase("text");
        (ok ? std::cout : std::cerr) << answer.dump(2) << "\n";
    } else if (ok) {
        std::string text = answer.value("text", "ok");
        std::cout << text << (text.empty() || text.back() != '\n' ? "\n" : "");
    } else {
        std::cerr << "relayguardctl: " << answer.value("error", "refused") << "\n";
    }
    if (!ok) return exit_refused;
    // A reload that left changes waiting for a restart is not "done".
    auto waiting = answer.find("needs_restart");
    if (waiting != answer.end() && waiting->is_array() && !waiting->empty()) return exit_restart_needed;
    return 0;
}

// `user release`: the daemon lifted the mark and named the queue ids it held;
// Postfix's own tools release them (as root, or Postfix's admin): postsuper
// -H moves each to the deferred queue, postqueue -i schedules it now rather
// than at the next queue run.
bool run_tool(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    int status = 0;
    return ::posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0 &&
           ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int release_held(const std::string& reply, const std::string& postfix_config) {
    auto answer = nlohmann::json::parse(reply, nullptr, false);
    auto is_true = [&](const char* key) { return answer.contains(key) && answer[key].is_boolean() && answer[key].get<bool>(); };
    if (answer.is_discarded() || !answer.is_object() || !is_true("ok") || !is_true("release")) return 0;
    if (!answer.contains("held") || !answer["held"].is_array()) return 0;
    int failed = 0, released = 0;
    for (const auto& id : answer["held"]) {
        if (!id.is_string()) {
            std::cerr << "relayguardctl: not releasing " << id.dump() << ": not a queue id\n";
            ++failed;
            continue;
        }
        std::string queue_id = id.get<std::string>();
        if (!clean_word(queue_id) || queue_id == "ALL" || queue_id[0] == '-') {
            std::cerr << "relayguardctl: not releasing \"" << queue_id << "\": not a queue id\n";
            ++failed;
            continue;
        }
        std::vector<std::string> args{"postsuper"};
        if (!postfix_config.empty()) args.insert(args.end(), {"-c", postfix_config});
        args.insert(args.end(), {"-H", queue_id});
        if (!run_tool(args)) {
            // The daemon has forgotten the id with the mark: say it, so it
            // can be released by hand.
            std::cerr << "relayguardctl: postsuper -H " << queue_id << " failed (run as root?); release it by hand\n";
            ++failed;
            continue;
        }
        ++released;
        std::vector<std::string> flush{"postqueue"};
        if (!postfix_config.empty()) flush.insert(flush.end(), {"-c", postfix_config});
        flush.insert(flush.end(), {"-i", queue_id});
        if (!run_tool(flush)) std::cerr << "relayguardctl: postqueue -i " << queue_id << " failed; it goes at the next queue run\n";
    }
    std::cout << "released " << released << " message(s) from the hold queue\n";
    return failed == 0 ? 0 : exit_refused;
}

// `oauth login`: the relay client asked the provider for a code; the admin
// approves it in a browser anywhere, while this waits for the relay client
// to see the approval (it polls the provider itself).
int oauth_login(Request r, const std::string& reply, bool json) {
    auto answer = nlohmann::json::parse(reply, nullptr, false);
    if (answer.is_discarded() || !answer.is_object() || !answer.value("ok", false)) return print_answer(r, reply, json);
    if (json) {
        std::cout << answer.dump(2) << "\n";
    } else {
        std::cout << answer.value("text", "") << "\n";
        std::string complete = answer.value("verification_uri_complete", "");
        if (!complete.empty()) std::cout << "(or open " << complete << ", which carries the code)\n";
        std::cout << "Waiting for the approval..." << std::endl;
    }
    long expires = answer.contains("expires_in") && answer["expires_in"].is_number_integer()
                       ? answer["expires_in"].get<long>() : 900;
    r.line = "oauth status";
    r.timeout_s = 3;
    for (long waited = 0; waited <= expires + 10; waited += 2) {
        ::sleep(2);
        std::string status;
        if (send_request(r, status) != 0) continue;  // said why; the daemon may be reloading
        auto st = nlohmann::json::parse(status, nullptr, false);
        if (st.is_discarded() || !st.is_object()) continue;
        std::string login = st.value("login", "");
        if (login == "authorised") {
            std::cout << "Authorised: relayguard-relayd holds tokens for " << st.value("account", "")
                      << " (scope " << st.value("scope", "") << ") in " << st.value("token_store", "") << "\n";
            return 0;
        }
        if (login == "failed" || login.empty()) {
            std::cerr << "relayguardctl: the login failed: " << st.value("login_error", "the relay client ended it")
                      << "\n";
            return exit_refused;
        }
    }
    std::cerr << "relayguardctl: no approval before the code expired\n";
    return exit_refused;
}

std::string without_unix_prefix(std::string path) { return path.rfind("unix:", 0) == 0 ? path.substr(5) : path; }

}  // namespace

int main(int argc, char** argv) {
    std::string socket_path = default_socket;
    std::string relayd_socket = default_relayd_socket;
    bool json = false;
    std::string postfix_config;
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--socket" && i + 1 < argc) {
            socket_path = without_unix_prefix(argv[++i]);
        } else if (a == "--relayd-socket" && i + 1 < argc) {
            relayd_socket = without_unix_prefix(argv[++i]);
        } else if (a == "--postfix-config" && i + 1 < argc) {
            postfix_config = argv[++i];
        } else if (a == "--json") {
            json = true;
        } else if (a == "--help" || a == "-h") {
            print_usage(std::cout);
            return 0;
        } else if (a == "--version") {
            std::cout << "relayguardctl " << relayguard::relayguard_version() << "\n";
            return 0;
        } else if (a.rfind("--", 0) == 0 && a != "--user" && a != "--minutes") {
            std::cerr << "relayguardctl: unknown option '" << a << "'\n";
            return usage();
        } else {
            args.push_back(a);
        }
    }
    auto request = request_for(args, socket_path, relayd_socket);
    if (!request) return usage();
    for (const auto& w : args) {
        if (!w.empty() && !clean_word(w)) {
            std::cerr << "relayguardctl: arguments must not contain spaces or control characters\n";
            return exit_usage;
        }
    }
    std::string reply;
    if (int status = send_request(*request, reply); status != 0) return status;
    if (request->line == "oauth login") return oauth_login(*request, reply, json);
    int status = print_answer(*request, reply, json);
    if (status != 0 || args.size() != 3 || args[0] != "user" || args[1] != "release") return status;
    return release_held(reply, postfix_config);
}
