// A private dnsmasq for the resolver tests: authoritative for .test and the
// reverse zone from fixed records, on a free loopback port, logging every
// query so a test can count what reached the server.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/store/redis_server_process.h"  // free_loopback_port

namespace relayguard::test {

class DnsmasqProcess {
public:
    // `records`: dnsmasq.conf lines (host-record=, mx-host=, ...).
    explicit DnsmasqProcess(const std::vector<std::string>& records, int ttl = 300) : port_(free_loopback_port()) {
        char tmpl[] = "/tmp/rg-dnsmasq-XXXXXX";
        dir_ = mkdtemp(tmpl);
        std::ofstream conf(dir_ + "/dnsmasq.conf");
        conf << "port=" << port_ << "\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nno-poll\n"
             << "local=/test/\nlocal=/in-addr.arpa/\nlocal-ttl=" << ttl << "\nuser=root\nlog-queries\n"
             << "log-facility=" << log_path() << "\n";
        for (const auto& r : records) conf << r << "\n";
        conf.close();
        pid_ = fork();
        if (pid_ == 0) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            std::string arg = "--conf-file=" + dir_ + "/dnsmasq.conf";
            execlp("dnsmasq", "dnsmasq", "--keep-in-foreground", "--pid-file=", arg.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        for (int i = 0; i < 200 && log().find("started") == std::string::npos; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        if (log().find("started") == std::string::npos) {
            stop();
            throw std::runtime_error("dnsmasq did not start (is dnsmasq-base installed?)");
        }
    }
    ~DnsmasqProcess() {
        stop();
        std::filesystem::remove_all(dir_);
    }
    DnsmasqProcess(const DnsmasqProcess&) = delete;
    DnsmasqProcess& operator=(const DnsmasqProcess&) = delete;

    std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
    void pause() { kill(pid_, SIGSTOP); }
    void resume() { kill(pid_, SIGCONT); }

    // Queries the server logged for `name` (dnsmasq: "query[MX] name from ...").
    int queries_for(const std::string& type, const std::string& name) const {
        std::string needle = "query[" + type + "] " + name + " from";
        std::string text = log();
        int n = 0;
        for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
        return n;
    }

private:
    std::string log_path() const { return dir_ + "/dnsmasq.log"; }
    std::string log() const {
        std::ifstream in(log_path());
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    void stop() {
        if (pid_ <= 0) return;
        kill(pid_, SIGCONT);
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    int port_;
    std::string dir_;
    pid_t pid_ = -1;
};

}  // namespace relayguard::test
