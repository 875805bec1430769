#!/usr/bin/env bash
# Run spambridge in the foreground on a fresh Debian 12 (as root): install what it needs,
# start a loopback spamd on 127.0.0.1:783 if none answers there, then serve the MTA on
# inet:8890@127.0.0.1 (override with --milter-socket ...). Extra arguments go to spambridge.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_PACKAGES=(spamassassin spamd spamc python3 python3-venv python3-pip)
missing=()
for package in "${RUNTIME_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

python=python3
if [[ -z "${VIRTUAL_ENV:-}" ]] && "$python" -c 'import sys, sysconfig, os
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    [[ -x var/venv/bin/python3 ]] || python3 -m venv var/venv
    python=var/venv/bin/python3
fi
"$python" -c 'import aiospamc' 2>/dev/null || "$python" -m pip install --quiet --root-user-action=ignore -e .

scripts/run-spamd.sh
exec "$python" -m spambridge file= --milter-socket inet:8890@127.0.0.1 \
    --spamd-socket 127.0.0.1:783 log=stderr verbose=info "$@"
