#!/usr/bin/python3
"""Prints the README's table of every setting, made from conf/relayguard.toml: key,
default and the first sentence of the comment above it, each key linked to its line.
`scripts/settings-table.py --check README.md` exits 1 when the README's table is not
what this prints (the test suite runs that), so the two never drift apart."""

import re
import sys
import tomllib

CONF = "conf/relayguard.toml"


def describe(comment):
    """The comment above a key, without its "Default ..." part, at most ~180 characters."""
    text = re.sub(r"\s*Defaults? .*?(\.(?=\s|$)|$)", " ", " ".join(comment)).strip()
    text = re.sub(r"\s+", " ", text)
    if len(text) > 180:
        text = text[:180].rsplit(" ", 1)[0] + " …"
    return text.replace("|", "\\|")


def rows(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    section, comment, out = "", [], []
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("["):
            section = s.strip("[]")
            comment = []
        elif re.match(r"^# [a-z_]+ = \S", s) and section:
            # A key left out of the example (off by default), shown commented.
            key, value = s[2:].split(" = ", 1)
            out.append((f"{section}.{key}", "off (e.g. " + value + ")", describe(comment), n))
            comment = []
        elif s.startswith("#"):
            comment.append(s.lstrip("# "))
        elif "=" in s and not s.startswith("{"):
            key = s.split("=", 1)[0].strip()
            value = s.split("=", 1)[1].strip()
            full = f"{section}.{key}" if section else key
            what = describe(comment)
            if not what and key == "mode":
                what = '"enforce", or "warn": log what it would refuse, refuse nothing.'
            elif not what and key == "reply":
                what = "The SMTP reply of this refusal."
            if section != "ip_groups":
                out.append((full, value, what, n))
            comment = []
        elif not s:
            comment = []
    return out


def table(path):
    tomllib.load(open(path, "rb"))  # must parse
    text = ["| setting | example value | what it is |", "|---|---|---|"]
    for full, value, what, n in rows(path):
        shown = value.replace("|", "\\|")
        text.append(f"| [`{full}`]({path}#L{n}) | `{shown}` | {what} |")
    return "\n".join(text) + "\n"


if __name__ == "__main__":
    generated = table(CONF)
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        readme = open(sys.argv[2], encoding="utf-8").read()
        m = re.search(r"<!-- settings-table begin -->\n(.*?)<!-- settings-table end -->", readme, re.S)
        if not m or m.group(1) != generated:
            print("README's settings table is out of date: run scripts/settings-table.py and paste it between "
                  "the settings-table markers", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    sys.stdout.write(generated)
