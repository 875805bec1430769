#!/usr/bin/env bash
# Build the Debian package spambridge_<version>_all.deb (and its source package, for lintian)
# from a clean export of a commit (HEAD by default) with Debian's own tools
# (dpkg-buildpackage, debhelper, dh-virtualenv).
#
#   scripts/build-deb.sh [COMMIT]   print the path of the .deb on the last line
#
# Uncommitted changes are not built. The result is cached in var/deb/<hash of the packaged
# files>/ (the latest build only): the same files are not built twice; SPAMBRIDGE_DEB_REBUILD=1
# builds anyway.
# Needs the build tools (scripts/install-deps.sh installs them) and PyPI: aiospamc and its
# dependencies are bundled into the package at build time.
set -euo pipefail
cd "$(dirname "$0")/.."

commit="${1:-HEAD}"
# The cache key: the files that go into the package (a change to the tests alone reuses it).
tree="$(git ls-tree -r "$commit" -- pyproject.toml README.md LICENSE spambridge debian deploy \
    docs sendmail | sha1sum | cut -d' ' -f1)"
out="$PWD/var/deb/$tree"

shopt -s nullglob
cached=("$out"/spambridge_*.deb)
if ((${#cached[@]} == 1)) && [[ "${SPAMBRIDGE_DEB_REBUILD:-0}" != 1 ]]; then
    echo "build-deb: $commit already built ($out)" >&2
    echo "${cached[0]}"
    exit 0
fi

work="$(mktemp -d /tmp/spambridge-deb.XXXXXX)"
trap 'rm -rf "$work"' EXIT
git archive --format=tar --prefix=spambridge/ "$commit" | tar -x -C "$work"

# Debian's python3 and tools, not a developer's interpreter or virtualenv.
(
    cd "$work/spambridge"
    env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV \
        PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH" \
        dpkg-buildpackage --build=full --no-sign
) >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed (log above)" >&2
    exit 1
}

# Keep one build: the cache is for re-running tests on an unchanged tree.
rm -rf "$PWD/var/deb"
mkdir -p "$out"
mv "$work"/*.deb "$work"/*.dsc "$work"/*.tar.* "$work"/*.buildinfo "$work"/*.changes \
    "$work/build.log" "$out/"
built=("$out"/spambridge_*.deb)
echo "build-deb: built ${built[0]}" >&2
echo "${built[0]}"
