// One line of a mail server's log, split the way syslog wrote it: which
// program logged it and what it said. Login patterns match from the start of
// the message, and only for the program they name, so text a client chose
// (a user name) can never stand where the server's own words stand.
//
// Forms read (the timestamp itself is not kept):
//   Dec  3 15:51:43 host prog[pid]: message             RFC 3164, syslog's classic file
//   Dec 03 15:51:43.123456 host prog[pid]: message      journalctl -o short-precise
//   2026-12-03T15:51:43.123456+00:00 host prog: message rsyslog's high-precision format,
//                                                       journalctl -o short-iso(-precise)
//   Dec 03 15:51:43 imap-login: Info: message           Dovecot's own log_path (no host)
//   2026-12-03 15:51:43 imap-login: Info: message       the same, log_timestamp = "%Y-%m-%d %H:%M:%S "
//   imap-login: Info: message                           the same, log_timestamp = ""
// Anything else (a line cut by rotation, a multi-line dump, a format not
// listed) is not a line of this kind, and opens nothing.
#pragma once

#include <optional>
#include <string_view>

namespace relayguard {

struct LogLine {
    std::string_view program;  // "dovecot", "cyrus/imap", "pop3-login": the tag without its [pid]
    std::string_view tag;      // the tag as written: "dovecot[442]", or the program when no pid
    std::string_view message;  // everything after "tag: "
};

// The parts of `line` (views into it), or nullopt when it has no syslog
// header of a form listed above.
std::optional<LogLine> parse_log_line(std::string_view line);

}  // namespace relayguard
