"""The Prometheus alerting rules and the Grafana dashboard in deploy/, against the metrics a
running daemon serves.

promtool (Debian `prometheus`) is the judge of the rules: `promtool check rules`, and `promtool
test rules` on deploy/spambridge-alerts.test.yml, where every alert fires on one instance and
stays quiet on another. The metric names the rules and the dashboard query are read from the
real /metrics of a daemon (two spamd hosts, one message through), not from a list kept here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spambridge.errors import SpamdError
from tests.support.daemon_process import short_tmpdir, start_daemon
from tests.support.policy_messages import deliver, headers_with, open_client, score_body
from tools.fake_spamd import FakeSpamd
from tools.stack import free_port

pytestmark = pytest.mark.timeout(60)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "spambridge-alerts.yml"
RULE_TESTS = DEPLOY / "spambridge-alerts.test.yml"
DASHBOARD = DEPLOY / "spambridge-grafana.json"
METRIC_NAME = re.compile(r"\bspambridge_[a-z0-9_]+")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool is not installed (Debian package prometheus; scripts/install-deps.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


async def _scrapes() -> tuple[str, str]:
    """(/metrics of a daemon that has seen no message, /metrics after one message)."""
    port = free_port()
    async with FakeSpamd() as first, FakeSpamd() as second:
        with short_tmpdir() as workdir:
            daemon = start_daemon(
                workdir,
                [
                    f"spamd-socket={first.address} {second.address}",
                    f"metrics-listen=127.0.0.1:{port}",
                ],
            )
            try:
                await daemon.wait_socket()
                await daemon.wait_log("metrics on")
                fresh = await asyncio.to_thread(scrape, port)
                client = await open_client(str(daemon.socket_path))
                try:
                    await deliver(client, headers_with(), score_body(1))
                    await client.quit()
                finally:
                    await client.close()
                return fresh, await asyncio.to_thread(scrape, port)
            finally:
                await daemon.stop()


@pytest.fixture(scope="module")
def served() -> tuple[str, str]:
    return asyncio.run(_scrapes())


def series_names(text: str) -> set[str]:
    """Every series name the exposition offers, from its families (a counter family is
    queried as NAME_total, a histogram as NAME_bucket/_sum/_count), samples or not."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def dashboard_queries() -> list[str]:
    def walk(panels: list[dict[str, object]]) -> Iterator[str]:
        for panel in panels:
            for target in panel.get("targets", []):  # type: ignore[attr-defined]
                yield str(target["expr"])
            yield from walk(panel.get("panels", []))  # type: ignore[arg-type]

    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def spamd_error_kinds() -> set[str]:
    kinds, todo = set(), [SpamdError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not SpamdError:
            kinds.add(cls.kind)
    return kinds


def test_alerts_counters_the_rules_read_are_served_at_zero_from_start(
    served: tuple[str, str],
) -> None:
    """A counter that first appears at 1 is no increase to Prometheus: the first internal
    error (or spamd error of a kind) after a start would never fire an alert."""
    fresh = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(served[0])
        for s in f.samples
    }
    assert fresh[("spambridge_internal_errors_total", ())] == 0
    assert fresh[("spambridge_protocol_errors_total", ())] == 0
    for kind in spamd_error_kinds():
        assert fresh[("spambridge_spamd_errors_total", (("kind", kind),))] == 0, kind


def test_alerts_rules_and_dashboard_query_only_metrics_the_daemon_serves(
    served: tuple[str, str],
) -> None:
    names = series_names(served[1])
    assert {"spambridge_spamd_host_up", "spambridge_spamd_seconds_bucket"} <= names
    used_by_rules = set(METRIC_NAME.findall(RULES.read_text()))
    # the whole file: queries, the instance variable's label_values(...) and the descriptions
    used_by_dashboard = set(METRIC_NAME.findall(DASHBOARD.read_text()))
    assert {n for q in dashboard_queries() for n in METRIC_NAME.findall(q)} <= used_by_dashboard
    assert len(used_by_rules) >= 6 and len(used_by_dashboard) >= 10
    assert sorted(used_by_rules - names) == []
    assert sorted(used_by_dashboard - names) == []


def test_alerts_rules_pass_promtool_check_and_their_unit_tests() -> None:
    tool = promtool()
    for argv in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        done = subprocess.run([tool, *argv], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_each_alert_fires_and_stays_quiet_in_the_unit_tests() -> None:
    alerts = re.findall(r"^      - alert: (\w+)$", RULES.read_text(), re.M)
    assert len(alerts) >= 7, alerts  # errors, fail-open, all down, set aside, gray, slow, ours
    tests = RULE_TESTS.read_text()
    fires = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", tests))
    quiet = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", tests))
    assert set(alerts) == fires == quiet


def test_alerts_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query as a recording rule (Grafana's interval
    variables replaced by a duration)."""
    tool = promtool()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": query.replace("$__rate_interval", "5m")}
        for i, query in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
