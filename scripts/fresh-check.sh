#!/usr/bin/env bash
# The README's two commands on a machine state that never ran them, as root on Debian 12:
#
#   scripts/fresh-check.sh                 run.sh, then CI=true test.sh on the set-up subset
#   scripts/fresh-check.sh tests/e2e       ... on the tests given instead
#
# A fresh clone of this checkout's HEAD in a temporary directory (no var/: no venv, no Postfix
# download, no corpus, no built .deb), Debian's own python3 (externally managed, so the venv
# path is taken), and the files the suite's tools leave behind outside the clone removed
# (systemd-analyze verify's /run/systemd/systemd-units-load, mount's empty /run/mount). Then
# `./scripts/run.sh` must come up and a real Sendmail with the shipped snippet must deliver
# GTUBE tagged and ham untagged through it; then `CI=true ./scripts/test.sh` (skips fail).
# Uses 127.0.0.1:783 and 8890, as run.sh does; everything started is stopped.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
subset=(tests/unit/test_packaging.py tests/e2e/test_package.py tests/scenarios/test_ops_alerts.py
    tests/e2e/test_starttls_received.py)
(($#)) && subset=("$@")

fresh="$(mktemp -d /tmp/spambridge-fresh.XXXXXX)"
git clone -q "$repo" "$fresh/spambridge"
cd "$fresh/spambridge"
echo "fresh-check: $(git log --oneline -1) in $PWD"
forget_tool_leftovers() {
    rm -f /run/systemd/systemd-units-load
    rmdir /run/mount 2>/dev/null || true
}
forget_tool_leftovers
if dpkg-query -W -f='${db:Status-Status}' spambridge 2>/dev/null | grep -qx installed; then
    echo "fresh-check: the spambridge package is installed; purge it first" >&2
    exit 1
fi
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV

setsid ./scripts/run.sh >run.log 2>&1 </dev/null &
run_pid=$!
stop_run() {
    kill -TERM -- "-$run_pid" 2>/dev/null || true
    if [[ -f var/spamd/spamd.pid ]]; then kill "$(cat var/spamd/spamd.pid)" 2>/dev/null || true; fi
}
trap stop_run EXIT
for _ in $(seq 1 900); do
    grep -q " ready; spamd " run.log && break
    kill -0 "$run_pid" 2>/dev/null || { cat run.log; echo "fresh-check: run.sh exited" >&2; exit 1; }
    sleep 1
done
grep -q " ready; spamd " run.log || { cat run.log; echo "fresh-check: run.sh never ready" >&2; exit 1; }
var/venv/bin/python3 - <<'EOF'
import pathlib
import tempfile

from tools import stack
from tools.stack import gtube_message, ham_message, header_values

workdir = pathlib.Path(tempfile.mkdtemp(prefix="spambridge-fresh-mta-"))
workdir.chmod(0o755)
mta = stack.start_sendmail(workdir, "inet:8890@127.0.0.1")
try:
    for message, flag in ((gtube_message(), [b"YES"]), (ham_message(), [])):
        code, text = stack.send_smtp(mta.port, "alice@example.org", ["bob@example.test"], message)
        assert code == 250, text
        (delivered,) = mta.wait_delivered(1)
        mta.clear_delivered()
        assert header_values(delivered, b"X-Spam-Flag") == flag, delivered[:2000]
finally:
    mta.stop()
print("fresh-check: run.sh up; through Sendmail GTUBE is tagged, ham is not")
EOF
stop_run
trap - EXIT

forget_tool_leftovers
CI=true ./scripts/test.sh -x -p no:cacheprovider "${subset[@]}"
cd /
rm -rf "$fresh"  # kept when something failed, to look into
echo "fresh-check: passed"
