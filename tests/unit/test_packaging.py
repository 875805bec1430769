"""The packaging files agree with each other: one version everywhere, the Debian package's
unit/init/default/tmpfiles files are the deploy/ ones, and every file they name exists."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import spambridge

ROOT = Path(__file__).resolve().parents[2]
DEBIAN = ROOT / "debian"


def test_packaging_one_version_in_pyproject_package_and_debian_changelog() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.fullmatch(r"spambridge \(([^)]+)\) \S+; urgency=\w+", first)
    assert match, first
    # 3.0 (native): the Debian version is the project's version, with no Debian revision.
    assert (DEBIAN / "source" / "format").read_text().strip() == "3.0 (native)"
    assert match.group(1) == project == spambridge.__version__


def test_packaging_debian_installs_the_deploy_files_themselves() -> None:
    for suffix in ("service", "socket", "default", "init", "tmpfiles"):
        link = DEBIAN / f"spambridge.{suffix}"
        assert link.is_symlink(), f"{link} should link to deploy/, not copy it"
        assert link.resolve() == (ROOT / "deploy" / f"spambridge.{suffix}").resolve()


def test_packaging_files_named_by_debian_lists_exist() -> None:
    for listing in ("examples", "manpages", "docs", "install"):
        for line in (DEBIAN / f"spambridge.{listing}").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert (ROOT / line.split()[0]).is_file(), f"spambridge.{listing}: {line}"


def test_packaging_init_script_is_posix_shell_with_the_lsb_actions() -> None:
    script = ROOT / "deploy" / "spambridge.init"
    done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    text = script.read_text()
    assert "### BEGIN INIT INFO" in text and "### END INIT INFO" in text
    for action in ("start", "stop", "restart", "reload | force-reload", "status"):
        assert re.search(rf"^    {re.escape(action)}\)$", text, re.M), action


def test_packaging_units_and_init_script_run_the_packaged_binary() -> None:
    service = (ROOT / "deploy" / "spambridge.service").read_text()
    assert "ExecStart=/usr/sbin/spambridge " in service
    assert "DAEMON=/usr/sbin/spambridge\n" in (ROOT / "deploy" / "spambridge.init").read_text()
    link = (DEBIAN / "spambridge.links").read_text().split()
    assert link == ["opt/venvs/spambridge/bin/spambridge", "usr/sbin/spambridge"]


def test_packaging_build_dependencies_are_installed_by_install_deps() -> None:
    control = (DEBIAN / "control").read_text()
    field = re.search(r"^Build-Depends:(.*?)^\S", control, re.M | re.S)
    assert field, control
    names = {re.split(r"[\s(]", dep.strip())[0] for dep in field.group(1).split(",")}
    names -= {"", "debhelper-compat"}  # debhelper itself provides the compat level
    installed = set((ROOT / "scripts" / "install-deps.sh").read_text().split())
    assert names and names <= installed | {"debhelper"}, names - installed
    assert "debhelper" in installed
