"""contrib/postfix/*.snippet read as Postfix reads main.cf, for the tests that apply the
shipped snippet to a private Postfix."""

import re


def read_main_cf(path, milter_port, policy_port):
    """The snippet's settings (continuation lines joined) as {key: value}, the shipped
    ports (milter 8893, policy 10040) replaced by the test's."""
    settings, key = {}, None
    for line in open(path):
        if line.startswith("#") or not line.strip():
            key = None if not line.strip() else key
            continue
        if line[0] in " \t" and key:
            settings[key] += " " + line.strip()
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        settings[key] = value.strip()
    for k, v in settings.items():
        settings[k] = re.sub(r"inet:127\.0\.0\.1:8893", f"inet:127.0.0.1:{milter_port}",
                             re.sub(r"inet:127\.0\.0\.1:10040", f"inet:127.0.0.1:{policy_port}", v))
    return settings
