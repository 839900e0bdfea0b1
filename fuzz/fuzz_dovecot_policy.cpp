// libFuzzer target: Dovecot's auth policy requests, the JSON body and the
// command from the URL, and the answer built from what was parsed.
#include <string>

#include "plugin/frontends/dovecot_policy_request.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
    std::string_view all(reinterpret_cast<const char*>(data), size);
    // The first byte chooses the command, so both kinds and junk are explored.
    static constexpr std::string_view commands[] = {"allow", "report", "", "reportx"};
    std::string_view command = size > 0 ? commands[data[0] % 4] : "allow";
    auto parsed = relayguard::parse_dovecot_policy_request(command, size > 0 ? all.substr(1) : all);
    if (parsed) {
        relayguard::Decision d;
        d.verdict = parsed->success ? relayguard::Verdict::proceed : relayguard::Verdict::tempfail;
        d.reply.text = parsed->login;
        (void)relayguard::dovecot_policy_answer(d);
    }
    return 0;
}
