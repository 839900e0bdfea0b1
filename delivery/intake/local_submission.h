// What relayguard-sendmail does to a message from a local program before it
// is queued, as Postfix's cleanup does for mail from its sendmail: a bare
// name gets the origin domain (myorigin), and a message without From:,
// Date: or Message-ID: gets them (RFC 5322 requires From and Date; a
// smart host or a recipient's filter treats mail without them as spam).
// Pure functions: the command supplies the time, the id and the names.
#pragma once

#include <string>

#include "common/base/clock.h"
#include "delivery/delivery_settings.h"

namespace relayguard {

// delivery.origin, else the first line of `mailname_file` (Debian's
// /etc/mailname), else `host` when it has a dot, else host.localdomain
// (Postfix's default $mydomain).
std::string mail_origin(const DeliverySettings& settings, const std::string& mailname_file, const std::string& host);

// "alice" -> "alice@origin"; an address with a domain, or "" (the null
// sender), is kept as it is.
std::string qualified(const std::string& address, const std::string& origin);

struct LocalSender {
    std::string address;    // the envelope sender, qualified
    std::string full_name;  // -F, or "" (then the From: is the bare address)
};

// The message (CRLF lines) with what its header section lacks added at its
// top: From: (the sender), Date: (`now`), Message-ID: (<id@origin>).
std::string with_missing_headers(const std::string& content, const LocalSender& sender, TimePoint now,
                                 const std::string& queue_id, const std::string& origin);

}  // namespace relayguard
