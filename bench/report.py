"""Medians over passes, the four targets, and the markdown/plot renderings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Record = dict[str, Any]

BRIDGE = "spambridge"  # event-loop asyncio: the plain install
BRIDGES = (BRIDGE, "spambridge-uvloop")  # event-loop uvloop: the default when uvloop is present
PEER = "spamass-milter"
NULL = "nullfilter"  # the floor as the targets are written: never calls spamd
# The scanning floor: the same spamd round trip as spambridge (REPORT, one TCP connection per
# message), in C. Ratios against it are measured like for like; against NULL they are not.
NULLSCAN = "nullscan"
_MEDIAN_FIELDS = ("msgs_per_s", "p50_ms", "p90_ms", "p99_ms", "cpu_s_per_1000")


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarise(records: Sequence[Record]) -> list[Record]:
    """One row per (phase, scenario, subject): medians over passes; memory rows as they are."""
    groups: dict[tuple[str, str, str], list[Record]] = {}
    rows: list[Record] = []
    for record in records:
        if record["phase"] == "memory":
            rows.append(dict(record))
            continue
        if record["phase"] == "spamdcost":
            key = ("spamdcost", f"c={record['concurrency']}", f"spamd client, {record['loop']}")
            groups.setdefault(key, []).append(record)
            continue
        key = (record["phase"], record["scenario"], record["subject"])
        groups.setdefault(key, []).append(record)
    for (phase, scenario, subject), runs in groups.items():
        if phase == "spamdcost":
            rows.append(
                {
                    "phase": phase,
                    "scenario": scenario,
                    "subject": subject,
                    "passes": len(runs),
                    "cpu_s_per_1000": _median([r["cpu_s_per_1000"] for r in runs]),
                }
            )
            continue
        row: Record = {
            "phase": phase,
            "backend": runs[0]["backend"],
            "scenario": scenario,
            "subject": subject,
            "passes": len(runs),
            "messages": sum(r["messages"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "nofile": runs[0].get("nofile"),
        }
        for name in _MEDIAN_FIELDS:
            row[name] = _median([r.get(name) for r in runs])
        row["peak_rss_kb"] = max((r.get("hwm_kb") or 0) for r in runs) or None
        if phase == "openloop":  # a p99 outlier next to a stall of its size is the machine
            row["p99_ms_passes"] = [r["p99_ms"] for r in runs]
            row["loadgen_stall_ms_passes"] = [r.get("loadgen_stall_ms") for r in runs]
        rows.append(row)
    return rows


def _load_cells(row: Record) -> list[object]:
    """The first six cells of every load table: who, and how fast."""
    return [
        row["scenario"],
        row["subject"],
        row["msgs_per_s"],
        row["p50_ms"],
        row["p90_ms"],
        row["p99_ms"],
    ]


def _load_head(scenario: str = "scenario", subject: str = "subject") -> list[str]:
    return [scenario, subject, "msg/s", "p50 ms", "p90 ms", "p99 ms"]


def _per_pass(values: Sequence[float | None] | None) -> str:
    if not values or all(v is None for v in values):
        return "–"
    return " / ".join("–" if v is None else f"{v:.1f}" for v in values)


def _find(summary: Sequence[Record], phase: str, scenario: str, subject: str) -> Record | None:
    for row in summary:
        if (row["phase"], row.get("scenario"), row["subject"]) == (phase, scenario, subject):
            return row
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _target(
    name: str, measured: float | None, limit: float, *, at_most: bool, basis: str | None = None
) -> Record:
    met = None if measured is None else (measured <= limit if at_most else measured >= limit)
    sign = "≤" if at_most else "≥"
    record: Record = {"target": name, "measured": measured, "limit": f"{sign} {limit}", "met": met}
    if basis is not None:  # which floor a 1b/2a ratio is against, for readers of the JSON
        record["basis"] = basis
    return record


def _rate(row: Record | None) -> float | None:
    return row["msgs_per_s"] if row else None


AS_WRITTEN = "as written: nullfilter, which never calls spamd"
MEASURED_FLOOR = "measured: nullscan, a C filter with the same spamd round trip"
SHARED_BASIS = "measured: the chains at the same time on one spamd (shared phase)"


def targets(summary: Sequence[Record], records: Sequence[Record], max_size_kb: int) -> list[Record]:
    out: list[Record] = []
    iso = sorted({r["scenario"] for r in summary if r["phase"] == "isolated"})
    for scenario, who in ((s, b) for s in iso for b in BRIDGES):
        bridge = _find(summary, "isolated", scenario, who)
        peer = _find(summary, "isolated", scenario, PEER)
        null = _find(summary, "isolated", scenario, NULL)
        scan = _find(summary, "isolated", scenario, NULLSCAN)
        if not bridge:
            continue
        cpu = bridge["cpu_s_per_1000"]
        floors = (
            ("spamass-milter", peer, round(1 / 3, 3), None),
            ("null C filter", null, 2.0, AS_WRITTEN),
            ("nullscan (scanning C floor)", scan, 2.0, MEASURED_FLOOR),
        )
        for label, other, limit, basis in floors:
            if other:
                ratio = _ratio(cpu, other["cpu_s_per_1000"])
                name = f"(1) {scenario}: CPU {who} / {label}"
                out.append(_target(name, ratio, limit, at_most=True, basis=basis))
        if peer and scenario.startswith("c=1 "):
            out.append(
                _target(
                    f"(1) {scenario}: p50 {who} / spamass-milter",
                    _ratio(bridge["p50_ms"], peer["p50_ms"]),
                    1.0,
                    at_most=True,
                )
            )
    for row in summary:
        if row["phase"] == "openloop" and row["subject"] in BRIDGES:
            out.append(
                _target(
                    f"(4) open loop {row['scenario']}: p99 ms, {row['subject']}",
                    row["p99_ms"],
                    10.0,
                    at_most=True,
                )
            )
    chain = {r["subject"]: r for r in summary if r["phase"] == "chain"}
    bridge_chain = chain.get(f"sendmail + {BRIDGE}")
    if bridge_chain:
        rate = bridge_chain["msgs_per_s"]
        null_chain = chain.get(f"sendmail + {NULL}")
        scan_chain = chain.get(f"sendmail + {NULLSCAN}")
        direct = chain.get("spamd directly")
        peer_chain = chain.get(f"sendmail + {PEER}")
        null_rate, direct_rate = _rate(null_chain), _rate(direct)
        ceiling = None
        if null_rate is not None and direct_rate is not None:
            ceiling = min(null_rate, direct_rate)
        comparisons = (
            ("null-filter chain", null_rate, 0.97, AS_WRITTEN),
            ("nullscan chain", _rate(scan_chain), 0.97, MEASURED_FLOOR),
            (
                "min(null-filter chain, spamd directly)",
                ceiling,
                0.97,
                AS_WRITTEN + ", capped at spamd's own rate",
            ),
            ("spamass-milter chain", _rate(peer_chain), 1.05, None),
        )
        for label, other_rate, limit, basis in comparisons:
            if other_rate is not None:
                name = f"(2) chain msg/s: spambridge / {label}"
                out.append(
                    _target(name, _ratio(rate, other_rate), limit, at_most=False, basis=basis)
                )
    shared = {r["subject"]: r for r in summary if r["phase"] == "shared"}
    bridge_shared = shared.get(f"sendmail + {BRIDGE}")
    if bridge_shared:
        pairs = (("nullscan", NULLSCAN, 0.97), ("spamass-milter", PEER, 1.05))
        for label, floor_name, limit in pairs:
            other_rate = _rate(shared.get(f"sendmail + {floor_name}"))
            if other_rate is not None:
                name = f"(2) chains at once, one spamd: spambridge / {label} msg/s"
                measured = _ratio(bridge_shared["msgs_per_s"], other_rate)
                out.append(_target(name, measured, limit, at_most=False, basis=SHARED_BASIS))
    for row in summary:
        if row["phase"] != "memory" or row["subject"] != BRIDGE:
            continue
        out.append(
            _target("(3) idle RSS, MB", round(row["idle_rss_kb"] / 1024, 2), 40.0, at_most=True)
        )
        out.append(
            _target(
                "(3) KB per idle connection (1,000 open)",
                row["kb_per_idle_conn"],
                30.0,
                at_most=True,
            )
        )
        limit_mb = round((3 * max_size_kb + 10 * 1024) / 1024, 2)
        out.append(
            _target(
                "(3) peak RSS rise for a 50 MB message, MB",
                round(row["big_peak_rise_kb"] / 1024, 2),
                limit_mb,
                at_most=True,
            )
        )
    return out


# ------------------------------------------------------------------------------ markdown


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def markdown(
    meta: Record, summary: Sequence[Record], goals: Sequence[Record], records: Sequence[Record]
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Mode **{meta['mode']}**, {meta['plan']['passes']} pass(es), started {meta['started']}, "
        f"took {meta['duration_s']} s. {meta['machine']}, Python {meta['python']}. "
        f"Messages {meta['message_size']} bytes. Every milter ran with `ulimit -n` "
        f"{meta['subject_nofile']} (memory phase: {meta['memory_nofile']}). Figures are medians "
        "over passes; CPU is the milter's whole process tree (spamass-milter's spamc children "
        "included); ratios compare subjects measured in this same run.",
        "",
    ]
    iso = [r for r in summary if r["phase"] == "isolated"]
    if iso:
        lines += [
            "## Isolated: milter protocol driven directly, instant fake spamd",
            "",
            "Two C floors: the null filter never calls spamd (target 1b as written); nullscan "
            "buffers the message and makes the same REPORT round trip to spamd as spambridge, "
            "so CPU vs nullscan is the like-for-like ratio.",
            "",
        ]
        rows = []
        for row in iso:
            peer = _find(summary, "isolated", row["scenario"], PEER)
            null = _find(summary, "isolated", row["scenario"], NULL)
            scan = _find(summary, "isolated", row["scenario"], NULLSCAN)
            cpu = row["cpu_s_per_1000"]
            rows.append(
                [
                    *_load_cells(row),
                    cpu,
                    _ratio(cpu, peer["cpu_s_per_1000"]) if peer else None,
                    _ratio(cpu, null["cpu_s_per_1000"]) if null else None,
                    _ratio(cpu, scan["cpu_s_per_1000"]) if scan else None,
                    round(row["peak_rss_kb"] / 1024, 1) if row["peak_rss_kb"] else None,
                    row["errors"],
                ]
            )
        lines += _table(
            [
                *_load_head(),
                "CPU s/1000 msgs",
                "CPU vs spamass-milter",
                "CPU vs null filter",
                "CPU vs nullscan",
                "peak RSS MB",
                "errors",
            ],
            rows,
        )
        lines.append("")
    costs = [r for r in summary if r["phase"] == "spamdcost"]
    if costs:
        lines += [
            "## spambridge's spamd client alone (SpamdPool.scan, instant fake spamd)",
            "",
            "CPU per scan of a process that only calls spambridge's spamd client: the share of "
            "spambridge's isolated CPU per message that a filter which never calls spamd (the "
            "null filter) does not pay. nullscan pays its C counterpart; these figures stay "
            "as a breakdown, not as a floor.",
            "",
        ]
        lines += _table(
            ["scenario", "client", "CPU s/1000 scans"],
            [[r["scenario"], r["subject"], r["cpu_s_per_1000"]] for r in costs],
        )
        lines.append("")
    opened = [r for r in summary if r["phase"] == "openloop"]
    if opened:
        lines += [
            "## Open loop: added latency at c=50 under a fixed rate, instant fake spamd",
            "",
            "The same rate for every subject: half the slowest subject's closed-loop rate at c=50. "
            "Latency runs from end of message to the final reply. Per pass: each pass's p99, and "
            "the longest the load generator's own event loop woke late in that pass (a machine "
            "or generator stall delays every message in flight by about that much).",
            "",
        ]
        rows = [
            [
                *_load_cells(r),
                _per_pass(r.get("p99_ms_passes")),
                _per_pass(r.get("loadgen_stall_ms_passes")),
                r["cpu_s_per_1000"],
                r["errors"],
            ]
            for r in opened
        ]
        lines += _table(
            [
                *_load_head(),
                "p99 ms per pass",
                "loadgen stall ms per pass",
                "CPU s/1000",
                "errors",
            ],
            rows,
        )
        lines.append("")
    lines += _chain_section(
        summary,
        "mtapath",
        "MTA path: Sendmail + instant fake spamd over SMTP (one session per message)",
    )
    lines += _chain_section(
        summary, "chain", "Real chain: Sendmail + real spamd over SMTP (one session per message)"
    )
    lines += _chain_section(
        summary,
        "shared",
        "Chains at once: the scanning chains side by side on one real spamd, "
        "messages completed in the same window",
    )
    mem = [r for r in summary if r["phase"] == "memory"]
    if mem:
        lines += ["## Memory (fake spamd; spamd-max-size defaults)", ""]
        rows = [
            [
                r["subject"],
                round(r["idle_rss_kb"] / 1024, 1),
                round(r["warm_rss_kb"] / 1024, 1),
                round(r["rss_with_idle_conns_kb"] / 1024, 1),
                r["kb_per_idle_conn"],
                round(r["big_peak_rise_kb"] / 1024, 1),
                r["big_seconds"],
                r["big_final"],
            ]
            for r in mem
        ]
        lines += _table(
            [
                "subject",
                "idle RSS MB",
                "RSS after 200 msgs MB",
                f"RSS with {mem[0]['idle_conns']} idle conns MB",
                "KB per idle conn",
                "peak RSS rise, 50 MB message, MB",
                "50 MB message s",
                "50 MB final reply",
            ],
            rows,
        )
        lines.append("")
    if goals:
        lines += ["## Targets", ""]
        rows = [
            [
                g["target"],
                g["measured"],
                g["limit"],
                {True: "met", False: "MISSED"}.get(g["met"], "–"),
                g.get("basis"),
            ]
            for g in goals
        ]
        lines += _table(["target", "measured", "limit", "result", "floor"], rows)
        lines.append("")
    return "\n".join(lines)


def _chain_section(summary: Sequence[Record], phase: str, heading: str) -> list[str]:
    """The table of a phase with Sendmail in front: each path, and its rate against the
    null-filter, nullscan and spamass-milter paths of the same phase."""
    chain = [r for r in summary if r["phase"] == phase]
    if not chain:
        return []
    by_name = {r["subject"]: r for r in chain}
    null_rate = by_name.get(f"sendmail + {NULL}", {}).get("msgs_per_s")
    scan_rate = by_name.get(f"sendmail + {NULLSCAN}", {}).get("msgs_per_s")
    peer_rate = by_name.get(f"sendmail + {PEER}", {}).get("msgs_per_s")
    rows = [
        [
            *_load_cells(r),
            r["cpu_s_per_1000"],
            _ratio(r["msgs_per_s"], null_rate),
            _ratio(r["msgs_per_s"], scan_rate),
            _ratio(r["msgs_per_s"], peer_rate),
            r["errors"],
        ]
        for r in chain
    ]
    head = [
        *_load_head("concurrency", "path"),
        "milter CPU s/1000 msgs",
        "msg/s vs null-filter path",
        "msg/s vs nullscan path",
        "msg/s vs spamass-milter path",
        "errors",
    ]
    return [f"## {heading}", "", *_table(head, rows), ""]


def plot(summary: Sequence[Record], path: Path) -> bool:
    """Bar charts of CPU per message (isolated) and chain throughput; False without
    matplotlib or without both phases."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    iso = [r for r in summary if r["phase"] == "isolated"]
    chain = [r for r in summary if r["phase"] == "chain"]
    if not iso or not chain:
        return False  # a partial run (--phases) has nothing to draw in one of the panels
    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    scenarios = sorted({r["scenario"] for r in iso})
    subjects = sorted({r["subject"] for r in iso})
    width = 0.8 / max(1, len(subjects))
    for i, subject in enumerate(subjects):
        values = []
        for scenario in scenarios:
            row = _find(summary, "isolated", scenario, subject)
            values.append(row["cpu_s_per_1000"] or 0.0 if row else 0.0)
        xs = [x + i * width for x in range(len(scenarios))]
        axes[0].bar(xs, values, width, label=subject)
    axes[0].set_xticks([x + 0.4 - width / 2 for x in range(len(scenarios))], scenarios)
    axes[0].set_ylabel("milter CPU seconds per 1,000 messages")
    axes[0].set_title("Isolated (fake spamd): CPU per message, lower is better")
    axes[0].legend()
    axes[1].barh([r["subject"] for r in chain], [r["msgs_per_s"] or 0.0 for r in chain])
    axes[1].set_xlabel("messages/s")
    axes[1].set_title("Sendmail + real spamd, SMTP, c=8: throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
