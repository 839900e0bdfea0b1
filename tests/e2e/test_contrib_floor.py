#!/usr/bin/python3
"""No line of contrib/postfix/ weakens a protection Postfix has by default: every setting
of main.cf.snippet and relayhost.snippet is compared with `postconf -d` (Debian's Postfix):
no count, size or limit raised (0 = unlimited counts as raised), a dead milter or policy
service never lets mail through (tempfail/reject, 4xx/5xx), no restriction list permits
everyone or lets permit_mynetworks/permit_sasl_authenticated skip the policy service, the
relay list keeps reject_unauth_destination, TLS is not switched off where Postfix offers
it (smtp_tls_security_level / smtpd_tls_security_level = none or empty, where Debian's stock
main.cf says may or stronger: see stock_tls_levels), SSLv2/SSLv3 are not re-enabled, SASL
is not enabled without smtpd_tls_auth_only.  The
rules are shown to be live on a snippet that breaks them.  contrib/sendmail/relayguard.mc
keeps F=T (or F=R) on its milter, so a dead relayguard never means unfiltered mail."""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rgtest.check import check, finish  # noqa: E402

SOURCE = os.environ["RELAYGUARD_SOURCE_DIR"]
SNIPPETS = ["contrib/postfix/main.cf.snippet", "contrib/postfix/relayhost.snippet"]
SENDMAIL_MC = "contrib/sendmail/relayguard.mc"

# The TLS lines Debian's postfix package writes into the main.cf it creates
# (smtpd_tls_security_level=may, smtp_tls_security_level=may, the snakeoil cert, ...).
DEBIAN_MAIN_CF_TLS = "/usr/share/postfix/main.cf.tls"
TLS_LEVEL_KEYS = ("smtpd_tls_security_level", "smtp_tls_security_level")
# Levels at which Postfix uses TLS (opportunistic or mandatory); "none" and "" use none.
TLS_ON = ("may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure")


def parse_main_cf(text):
    """main.cf text as {key: value}: comments and blank lines skipped, lines starting with
    whitespace continue the setting before them (as Postfix reads main.cf)."""
    settings, key = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if key is not None:
                settings[key] = (settings[key] + " " + line.strip()).strip()
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        settings[key] = value.strip()
    return settings


_defaults_cache = {}


def postfix_defaults(keys):
    """{key: `postconf -d key`} for keys Postfix knows (unknown ones are left out).
    postconf -d needs no real main.cf: an empty config directory is given, so the answer is
    Postfix's built-in default whatever /etc/postfix holds."""
    want = [k for k in keys if k not in _defaults_cache]
    if want:
        with tempfile.TemporaryDirectory(prefix="rgtest-floor-") as d:
            for name in ("main.cf", "master.cf"):
                open(os.path.join(d, name), "w").close()
            p = subprocess.run(["postconf", "-c", d, "-d", *want], capture_output=True, text=True, timeout=60)
        for line in p.stdout.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                _defaults_cache[k.strip()] = v.strip()
        for k in want:
            _defaults_cache.setdefault(k, None)
    return {k: _defaults_cache[k] for k in keys if _defaults_cache.get(k) is not None}


def without_stress(value):
    """The value Postfix uses when not under stress: ${stress?{1}:{20}} is 20."""
    value = re.sub(r"\$\{stress\?\{([^{}]*)\}:\{([^{}]*)\}\}", r"\2", value)
    value = re.sub(r"\$\{stress\?[^{}]*\}", "", value)
    return re.sub(r"\$\{stress:([^{}]*)\}", r"\1", value)


def expand(value, lookup, depth=0):
    """$name and ${name} replaced by lookup(name) (the snippet's setting, else the default)."""
    value = without_stress(value)
    if depth > 5:
        return value

    def one(m):
        v = lookup(m.group(1) or m.group(2))
        return expand(v, lookup, depth + 1) if v is not None else m.group(0)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, value)


_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def number(value):
    """An integer setting (time values in seconds); None when it is not one."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", value)
    return int(m.group(1)) * _TIME_UNITS[m.group(2)] if m else None


def is_counted(key):
    return key.endswith("_limit") or "_count" in key or "_size" in key


def items(value):
    """A Postfix list split on commas and whitespace, {...} kept whole."""
    out, cur, depth = [], "", 0
    for c in value:
        if c == "{":
            depth += 1
        elif c == "}" and depth:
            depth -= 1
        if depth == 0 and (c == "," or c.isspace()):
            if cur:
                out.append(cur)
            cur = ""
            continue
        cur += c
    return out + ([cur] if cur else [])


_PROTOCOLS = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]


def protocol_enabled(proto, value):
    """Whether a *_tls_*protocols value lets `proto` be used (Postfix's syntax: names to
    include, !names to exclude, >=/<= bounds; an empty list allows all)."""
    words = [w for w in re.split(r"[\s,:]+", value) if w]
    includes = [w for w in words if w in _PROTOCOLS]
    if includes and proto not in includes:
        return False
    if "!" + proto in words:
        return False
    rank = _PROTOCOLS.index(proto)
    for w in words:
        if w.startswith(">=") and w[2:] in _PROTOCOLS and rank < _PROTOCOLS.index(w[2:]):
            return False
        if w.startswith("<=") and w[2:] in _PROTOCOLS and rank > _PROTOCOLS.index(w[2:]):
            return False
    return True


_stock_tls_cache = {}


def stock_tls_levels():
    """{key: (level, where it comes from)} for smtp_tls_security_level and
    smtpd_tls_security_level as a stock install has them.  Postfix's compiled default for
    both is empty (no TLS); what a Debian machine runs with is what the package's main.cf
    says, and it writes those lines from /usr/share/postfix/main.cf.tls ("may" for both).
    That file is read when present.  Without it (not Debian, or the file moved), an empty
    compiled default is taken as "may": a snippet must not count on a distribution leaving
    TLS off, and "may" is what Debian, Ubuntu and most other packages ship."""
    if not _stock_tls_cache:
        compiled = postfix_defaults(list(TLS_LEVEL_KEYS))
        try:
            with open(DEBIAN_MAIN_CF_TLS) as f:
                stock = parse_main_cf(f.read())
        except FileNotFoundError:
            stock = None
        for key in TLS_LEVEL_KEYS:
            if stock is not None and stock.get(key):
                _stock_tls_cache[key] = (stock[key], DEBIAN_MAIN_CF_TLS)
            elif compiled.get(key):
                _stock_tls_cache[key] = (compiled[key], "postconf -d")
            elif stock is None:
                _stock_tls_cache[key] = ("may", f"postconf -d is empty and {DEBIAN_MAIN_CF_TLS} is missing: "
                                                "taken as Debian's 'may'")
            else:
                _stock_tls_cache[key] = ("", f"neither {DEBIAN_MAIN_CF_TLS} nor postconf -d sets it")
    return dict(_stock_tls_cache)


def weakenings(name, settings):
    """What in `settings` (one snippet, named `name`) weakens a Postfix default: a list of
    messages naming the file, the key, the snippet's value and the default."""
    known = postfix_defaults(list(settings) + ["smtpd_recipient_restrictions", "smtpd_sasl_auth_enable",
                                               "smtpd_tls_auth_only"])
    problems = []

    def lookup(n):
        return settings.get(n, known.get(n) if n in known else postfix_defaults([n]).get(n))

    def bad(key, why):
        problems.append(f"{name}: {key} = {settings[key]!r} {why} (Postfix default: {known.get(key)!r})")

    for key, value in settings.items():
        if key not in known:
            problems.append(f"{name}: {key} = {value!r} is not a Postfix parameter (postconf -d knows no default)")
            continue
        default = known[key]
        if is_counted(key):
            mine, theirs = number(expand(value, lookup)), number(expand(default, lookup))
            if mine is None or theirs is None:
                bad(key, "is not a number to compare")
            elif theirs != 0 and (mine == 0 or mine > theirs):
                bad(key, f"raises the limit above {theirs}" + (" (0 = unlimited)" if mine == 0 else ""))
        if key == "milter_default_action" and value not in ("tempfail", "reject"):
            bad(key, "lets mail through when the milter is unreachable (want tempfail or reject)")
        if key == "smtpd_policy_service_default_action" and value.strip()[:1] not in ("4", "5"):
            bad(key, "lets mail through when the policy service is unreachable (want a 4xx or 5xx)")
        if key.endswith("_restrictions"):
            words = items(value)
            if "permit" in words:
                bad(key, "holds a bare `permit`")
            if "check_policy_service" in words:
                first = words.index("check_policy_service")
                early = [w for w in words[:first] if w in ("permit_mynetworks", "permit_sasl_authenticated")]
                if early:
                    bad(key, f"has {', '.join(early)} before check_policy_service (it skips every limit)")
        if key == "smtpd_relay_restrictions":
            relay = items(value) if value.strip() else items(lookup("smtpd_recipient_restrictions") or "")
            if not {"reject_unauth_destination", "defer_unauth_destination"} & set(relay):
                bad(key, "drops reject_unauth_destination/defer_unauth_destination from the relay list")
        if key in TLS_LEVEL_KEYS:
            level, where = stock_tls_levels()[key]
            if expand(value, lookup).strip() in ("none", "") and level in TLS_ON:
                problems.append(f"{name}: {key} = {value!r} switches TLS off (stock: {level!r} from {where}; "
                                f"Postfix's compiled default: {default!r})")
        if re.search(r"_tls_(\w+_)?protocols$", key):
            for proto in ("SSLv2", "SSLv3"):
                mine, theirs = expand(value, lookup), expand(default, lookup)
                if protocol_enabled(proto, mine) and not protocol_enabled(proto, theirs):
                    bad(key, f"re-enables {proto}")
    if settings.get("smtpd_sasl_auth_enable") == "yes" and lookup("smtpd_tls_auth_only") == "no":
        problems.append(f"{name}: smtpd_sasl_auth_enable = 'yes' with smtpd_tls_auth_only = "
                        f"{lookup('smtpd_tls_auth_only')!r}: passwords may cross in clear "
                        f"(Postfix default: smtpd_sasl_auth_enable = {known.get('smtpd_sasl_auth_enable')!r})")
    return problems


def milter_flags(mc_text):
    """The F= flags of every INPUT_MAIL_FILTER in a Sendmail .mc ("" when F= is missing)."""
    out = []
    for m in re.finditer(r"INPUT_MAIL_FILTER\(\s*`[^']*'\s*,\s*`([^']*)'", mc_text):
        f = re.search(r"(?:^|,)\s*F=([A-Za-z]*)", m.group(1))
        out.append(f.group(1) if f else "")
    return out


# --- the rules are live: a snippet that breaks them is caught ------------------------------
broken = weakenings("selfcheck.cf", {"smtpd_hard_error_limit": "100", "milter_default_action": "accept"})
check("self-check: smtpd_hard_error_limit = 100 is reported as raising Postfix's 20",
      any("smtpd_hard_error_limit = '100'" in p and "'${stress?{1}:{20}}'" in p for p in broken), broken)
check("self-check: milter_default_action = accept is reported",
      any("milter_default_action = 'accept'" in p and "'tempfail'" in p for p in broken), broken)
check("self-check: nothing else is reported for it", len(broken) == 2, broken)

worse = weakenings("selfcheck2.cf", {
    "smtpd_client_connection_count_limit": "0",
    "message_size_limit": "20480000",
    "smtpd_policy_service_default_action": "DUNNO",
    "smtpd_relay_restrictions": "permit_mynetworks, check_policy_service inet:127.0.0.1:10040, permit",
    "smtpd_tls_protocols": "!SSLv2",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_tls_security_level": "none",
    "smtpd_no_such_parameter": "1",
})
for what in ("smtpd_client_connection_count_limit = '0'", "message_size_limit = '20480000'",
             "smtpd_policy_service_default_action = 'DUNNO'", "holds a bare `permit`",
             "permit_mynetworks before check_policy_service", "drops reject_unauth_destination",
             "re-enables SSLv3", "smtpd_tls_auth_only = 'no'", "switches TLS off",
             "smtpd_no_such_parameter"):
    check(f"self-check: the other rules catch {what}", any(what in p for p in worse), worse)
levels = stock_tls_levels()
check("self-check: the stock TLS levels the rule compares with use TLS (so the rule can fire here)",
      all(levels[k][0] in TLS_ON for k in TLS_LEVEL_KEYS), levels)
print("     stock TLS levels: " + "; ".join(f"{k} = {v!r} ({w})" for k, (v, w) in levels.items()), flush=True)
tls_off = weakenings("selfcheck4.cf", {"smtp_tls_security_level": "none", "smtpd_tls_security_level": ""})
for key, value in (("smtp_tls_security_level", "none"), ("smtpd_tls_security_level", "")):
    check(f"self-check: {key} = {value!r} is reported as switching TLS off (no default injected)",
          any(f"{key} = {value!r} switches TLS off" in p for p in tls_off), tls_off)
check("self-check: nothing else is reported for selfcheck4.cf", len(tls_off) == 2, tls_off)
fine = weakenings("selfcheck3.cf", {"smtpd_hard_error_limit": "10", "milter_default_action": "reject",
                                    "smtpd_tls_protocols": ">=TLSv1.2, !SSLv3",
                                    "smtp_tls_security_level": "may", "smtpd_tls_security_level": "encrypt",
                                    "smtpd_relay_restrictions": "check_policy_service inet:127.0.0.1:10040, "
                                                                "permit_sasl_authenticated, reject_unauth_destination"})
check("self-check: a stricter snippet passes", fine == [], fine)
check("self-check: an .mc milter without F= is caught", milter_flags(
    "INPUT_MAIL_FILTER(`rg', `S=inet:8893@127.0.0.1, T=C:10s')dnl\n") == [""])

# --- the shipped files ------------------------------------------------------------------------
for rel in SNIPPETS:
    with open(os.path.join(SOURCE, rel)) as f:
        settings = parse_main_cf(f.read())
    check(f"{rel}: has settings to compare", bool(settings), settings)
    problems = weakenings(rel, settings)
    check(f"{rel}: none of its {len(settings)} settings weakens a Postfix default", problems == [],
          "\n".join(problems))

with open(os.path.join(SOURCE, SENDMAIL_MC)) as f:
    flags = milter_flags(f.read())
check(f"{SENDMAIL_MC}: every INPUT_MAIL_FILTER keeps F=T or F=R (a dead milter is no free pass)",
      bool(flags) and all("T" in fl or "R" in fl for fl in flags), flags)
finish()
