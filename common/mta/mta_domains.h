// The domains an MTA receives mail for, read from the MTA itself, so that
// relayguard's idea of "local" can never drift from Postfix's or
// Sendmail's: a virtual domain added to Postfix and forgotten here would
// otherwise have its inbound mail refused as relaying.
//   Postfix: mydestination, virtual_alias_domains, virtual_mailbox_domains
//   and relay_domains through `postconf -x` (so $myhostname and friends are
//   expanded; relay_domains cover their subdomains as long as
//   parent_domain_matches_subdomains names it, as it does by default), with "/file/name" lists read and the file-based tables
//   (hash:, btree:, lmdb:, cdb:, dbm:, sdbm:, texthash:, inline:, also
//   behind proxy:) listed with `postmap -s`.
//   Sendmail: class w (local-host-names) and class R (relay-domains) from
//   sendmail.cf: its Cw/CR words and Fw/FR files, and its own name $j.
// A table that cannot be listed (mysql:, ldap:, pcre:, cidr: ...) is
// reported, never guessed at; the caller decides whether that stops it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace relayguard {

enum class MtaKind { postfix, sendmail };

struct MtaDomain {
    std::string name;              // ".example.org": its subdomains only
    bool with_subdomains = false;  // Sendmail's relay-domains also relay for subdomains
    friend bool operator==(const MtaDomain&, const MtaDomain&) = default;
};

struct MtaDomains {
    std::vector<MtaDomain> domains;
    // Each source that could not be listed, with where it was found and why:
    // "mysql:/etc/postfix/vdomains.cf (virtual_mailbox_domains): postmap cannot list it".
    std::vector<std::string> unreadable;
    // Files whose change means the domains must be read again.
    std::vector<std::string> watched;
};

// `config`: Postfix's configuration directory ("" = its default) or
// Sendmail's sendmail.cf ("" = /etc/mail/sendmail.cf). Fails when the MTA's
// configuration cannot be read at all.
Result<MtaDomains> read_mta_domains(MtaKind kind, const std::string& config);

// A fingerprint of `files` (each one's mtime and size, or its absence):
// equal fingerprints mean nothing to read again.
std::string files_fingerprint(const std::vector<std::string>& files);

// The pure parts, for tests.
// A Postfix list value split into its items (commas and white space
// separate them, but not inside inline:{...} braces).
std::vector<std::string> split_postfix_list(std::string_view value);
// The keys `postmap -s` printed that name domains ("key<TAB>value" lines;
// addresses with '@' are skipped).
std::vector<std::string> domain_keys(std::string_view postmap_output);
// sendmail.cf's class w and R: words given inline (Cw..., CR..., C{w}...)
// and the files named (Fw..., FR..., with or without -o), and $j (Dj).
struct SendmailDomainSources {
    struct File {
        std::string path;
        bool optional = false;  // "-o": Sendmail starts without it
        friend bool operator==(const File&, const File&) = default;
    };
    std::vector<std::string> local_names, relay_names;
    std::vector<File> local_files, relay_files;
    std::string own_name;  // Dj: the name Sendmail adds to class w itself
};
SendmailDomainSources parse_sendmail_cf(std::string_view text);

}  // namespace relayguard
