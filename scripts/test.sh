#!/usr/bin/env bash
# The project's test command: lint, format check, type check, then the whole test suite
# (unit, scenario and end-to-end; the e2e tests start their own spamd, Sendmail and Postfix).
set -euo pipefail
cd "$(dirname "$0")/.."

# Install what is missing first (idempotent: quick when everything is there), so this one
# command works on a fresh Debian 12. SPAMBRIDGE_NO_INSTALL=1 skips it.
if [[ "${SPAMBRIDGE_NO_INSTALL:-0}" != 1 ]]; then
    scripts/install-deps.sh
fi

# scripts/install-deps.sh puts the project into var/venv when the system python is
# externally managed.
if [[ -z "${VIRTUAL_ENV:-}" && -x var/venv/bin/python3 ]]; then
    export PATH="$PWD/var/venv/bin:$PATH"
fi

python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy

status=0
python3 -m pytest -q "$@" || status=$?
if ((status == 5)); then
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
