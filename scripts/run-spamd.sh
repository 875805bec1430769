#!/usr/bin/env bash
# Start a spamd on 127.0.0.1:783 (or $SPAMD_PORT) in the background unless one already
# answers there, so that `python -m spambridge --spamd-socket 127.0.0.1:783` has a peer.
# Loopback only. Local rules only (-L, no DNS or network tests) unless SPAMD_NETWORK=1.
# State (pid file, log, home) goes to var/spamd; stop it with: kill "$(cat var/spamd/spamd.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."

port="${SPAMD_PORT:-783}"
if spamc -d 127.0.0.1 -p "$port" -K >/dev/null 2>&1; then
    echo "spamd already answers on 127.0.0.1:$port"
    exit 0
fi

state="$PWD/var/spamd"
mkdir -p "$state/home"
args=(
    -d -i "127.0.0.1:$port" -A 127.0.0.1 -x
    -m "${SPAMD_CHILDREN:-5}" --min-children=2
    --cf='use_bayes 0' --cf='bayes_auto_learn 0'
    -H "$state/home" -r "$state/spamd.pid" -s "$state/spamd.log"
)
if [[ "${SPAMD_NETWORK:-0}" != 1 ]]; then
    args+=(-L)
fi
if ((EUID == 0)); then
    user=debian-spamd
    id "$user" >/dev/null 2>&1 || user=nobody
    chmod 0755 "$state"
    chown "$user:" "$state/home"
    args+=(-u "$user")
fi

spamd "${args[@]}"
for _ in $(seq 1 60); do
    if spamc -d 127.0.0.1 -p "$port" -K >/dev/null 2>&1; then
        echo "spamd pid $(cat "$state/spamd.pid") answers on 127.0.0.1:$port (log: $state/spamd.log)"
        exit 0
    fi
    sleep 0.5
done
echo "spamd did not answer on 127.0.0.1:$port within 30 s; see $state/spamd.log" >&2
exit 1
