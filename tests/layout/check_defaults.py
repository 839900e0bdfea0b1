#!/usr/bin/python3
"""Every "Default ..." in conf/relayguard.toml is the default the daemon
really has. For each key whose comment names its default, this starts
`relayguard --check-config` on a config that sets only that key to the
documented value, and compares the effective settings with those of a config
that leaves it out: the daemon's own parser and renderer decide, so "300s"
and "5m" are one value. A key with no documented default fails too, so a new
setting cannot arrive undocumented. The README's table is made from the same
file (scripts/settings-table.py, test readme_settings_table).

    tests/layout/check_defaults.py RELAYGUARD_BINARY SOURCE_DIR"""

import os
import re
import subprocess
import sys
import tempfile
import tomllib

# What every probe config holds: restricted relaying needs a local domain.
BASE = {"relay": {"local_domains": '["example.test"]'}}
# Keys whose default cannot be written alone, and why.
NOT_PROBED = {
    "relay.local_domains": "the probe itself sets it; its default, none, is refused in restricted mode",
}
# "Default X.", "Defaults X, Y and Z.", "Default: none."
DEFAULT = re.compile(r"\bDefaults?:? (?:is |are )?(.+?)(?:\.(?=\s|$)|;|$)")
REPLY = re.compile(r"^(\d{3}) (\d\.\d{1,3}\.\d{1,3})\b")


def keys_with_comments(path):
    """(section, key, value, comment, line) for every key, set or shown
    commented out. A key right below another, with no comment of its own,
    shares that key's comment (and its Default, or its share of "Defaults
    A, B")."""
    lines = open(path, encoding="utf-8").read().splitlines()
    section, comment, out, n = "", [], [], 0
    group_comment = None
    while n < len(lines):
        s = lines[n].strip()
        n += 1
        if s.startswith("["):
            section, comment, group_comment = s.strip("[]"), [], None
            continue
        shown = re.match(r"^# [a-z_]+ = \S", s) and section
        if s.startswith("#") and not shown:
            comment.append(s.lstrip("# "))
            continue
        if not s:
            comment, group_comment = [], None
            continue
        if "=" not in s or section in ("", "ip_groups"):
            continue
        line = n
        key, value = (s[2:] if shown else s).split("=", 1)
        value = value.strip()
        # A list over several lines: read to the line that closes it.
        if value == "[":
            while n < len(lines) and lines[n].strip() != "]":
                value += " " + lines[n].strip()
                n += 1
            value += " ]"
            n += 1
        if comment:
            group_comment = [" ".join(comment), 0]
        elif group_comment is not None:
            group_comment[1] += 1
        text, index = group_comment if group_comment else ("", 0)
        out.append((section, key.strip(), value, text, index, line))
        comment = []
    return out


def documented_default(text, index, example):
    """The TOML value a comment documents, or (None, why)."""
    m = DEFAULT.search(text)
    if not m:
        return None, "has no \"Default ...\" in its comment"
    words = m.group(1).strip()
    if re.match(r"^(?:as shown|as below|.*, as below)$", words):
        return example, None
    # Several defaults for a group of keys, in the keys' order.
    def is_value(text):
        try:
            tomllib.loads("v = " + re.sub(r"\s+\(.*\)$", "", text))
            return True
        except tomllib.TOMLDecodeError:
            return False
    parts = [words] if is_value(words) else re.split(r", | and ", words)
    if len(parts) > 1 and index >= len(parts):
        return None, f"\"Defaults {words}\" names no default for it"
    word = parts[min(index, len(parts) - 1)].strip()
    word = re.sub(r"\s+\(.*\)$", "", word)  # "32 (each address)"
    if word in ("off", "none"):
        return ('"off"' if word == "off" else ("[]" if example.startswith("[") else '""')), None
    if REPLY.match(word):
        return word, None
    try:
        tomllib.loads("v = " + word)
    except tomllib.TOMLDecodeError:
        return None, f"\"Default {words}\" is not a TOML value"
    return word, None


def render(binary, tables, workdir):
    text = ""
    for section, keys in tables.items():
        text += f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    path = os.path.join(workdir, "probe.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    r = subprocess.run([binary, "--check-config", path], capture_output=True, text=True)
    return r.returncode, (r.stdout.split("\n", 1)[1] if r.returncode == 0 else r.stderr.strip())


def main(binary, source):
    conf = os.path.join(source, "conf/relayguard.toml")
    problems, checked = [], 0
    with tempfile.TemporaryDirectory() as work:
        rc, base = render(binary, BASE, work)
        if rc != 0:
            print("the probe's base config is refused:", base)
            return 1
        for section, key, example, comment, index, line in keys_with_comments(conf):
            full = f"{section}.{key}"
            if full in NOT_PROBED:
                continue
            documented, why = documented_default(comment, index, example)
            if why:
                problems.append(f"relayguard.toml:{line}: {full} {why}")
                continue
            checked += 1
            reply = REPLY.match(documented)
            if reply:
                # A reply's default is named by its code and status.
                effective = tomllib.loads(base)
                for part in full.split("."):
                    effective = effective.get(part, {}) if isinstance(effective, dict) else {}
                got = (str(effective.get("code")), effective.get("status"))
                if got != (reply.group(1), reply.group(2)):
                    problems.append(f"relayguard.toml:{line}: {full}: documented default {documented}, "
                                    f"effective {got[0]} {got[1]}")
                continue
            tables = {s: dict(k) for s, k in BASE.items()}
            tables.setdefault(section, {})[key] = documented
            rc, probed = render(binary, tables, work)
            if rc != 0:
                problems.append(f"relayguard.toml:{line}: {full}: the documented default {documented} is refused: {probed}")
            elif probed != base:
                changed = [l for l in probed.splitlines() if l not in base.splitlines()]
                problems.append(f"relayguard.toml:{line}: {full}: documented default {documented}, "
                                f"but setting it changes the effective settings: {'; '.join(changed)}")
    for p in problems:
        print(p)
    print(f"{checked} documented defaults checked against the daemon, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "."))
