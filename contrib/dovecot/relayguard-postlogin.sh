#!/bin/sh
# Dovecot post-login hook for POP-before-SMTP: tells relayguard that $USER
# logged in from $IP, which opens a relay window for that address, then hands
# the session back to Dovecot. It never stops a login: when relayguard is
# down the user still reads mail; only relaying waits for the next login.
# Dovecot runs it as the postlogin service's user, which must be able to
# write to relayguard's admin socket (listen.admin_group).
RELAYGUARDCTL=${RELAYGUARDCTL:-/usr/bin/relayguardctl}
RELAYGUARD_ADMIN_SOCKET=${RELAYGUARD_ADMIN_SOCKET:-/run/relayguard/admin.sock}
"$RELAYGUARDCTL" --socket "$RELAYGUARD_ADMIN_SOCKET" pop grant "$IP" --user "$USER" >/dev/null 2>&1 || true
exec "$@"
