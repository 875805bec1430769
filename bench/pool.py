"""Pool phase: spambridge's spamd pool beside a spamc-style client, on a fleet of fake spamds.

    python -m bench.pool                 # every scenario, every subject (about 20 minutes)
    python -m bench.pool --scenarios heterogeneous --subjects least-loaded,spamc-style

The fake spamds (tools/fake_spamd.py) run in their own process. Each has a fixed
number of children, like spamd's --max-children, and a fixed service time per message that is
a sleep, so the shared CPU barely moves the figures. Scenarios:

- heterogeneous: three hosts of 2 children at 80, 40 and 20 ms per message (25, 50 and 100
  messages/s: capacities 1 : 2 : 4, 175 in all); 30 senders in a closed loop (each sends its
  next message when the last is answered), 40 messages each. Reported: messages/s as a
  fraction of the summed capacity in the steady state (from 1 s after the start until the
  first sender is done, while all 30 are sending), and over the whole run (ramp-up and the
  last stragglers included).
- slow-host: three equal hosts (2 children, 40 ms: 150 messages/s together); an open loop
  at 75 messages/s (what the two healthy hosts can carry); after 6 s the first host turns
  10x slower (400 ms) for the remaining 14 s. Reported: p50/p99 of the messages sent before
  and after, and the time from the slowdown to the last live message the slow host got.
- host-dies: the same three hosts and rate; the first host is killed after 5 s (connections
  in progress are closed unanswered, new ones refused) and started again at 12 s; the run
  ends 10 s later. Reported: messages lost (no verdict), failovers, and the time from the
  restart to the first message the host answers again.
- gray: a gray failure, one host slow for scans only (the fakes answer PING at once, as a
  spamd stuck on DNS does): three hosts of 2 children at 20 ms, the first 10x slower for
  the whole 60 s; 30 senders in a closed loop, spamd-max-connections 30, spamd-cooldown
  5 s. Reported: messages/s, p50/p99/p99.9, set-asides per host and when, probations
  (passed/failed) per host, scans the slow host answered.
- gray-mid: the same, all healthy for 20 s, then the first host slow for scans; 50 s.
- gray-floor: the two healthy hosts alone at the same load (30 s): the best any router can
  do, against which gray and gray-mid are judged.

Subjects: spambridge's SpamdPool with each spamd-select (its defaults otherwise:
spamd-max-connections 16, spamd-timeouts C:5s;S:30s;R:110s;E:120s, spamd-slow-factor 5,
spamd-slow-samples 5), least-loaded with weights 1:2:4 on the heterogeneous pool, and
"spamc-style": what spamc -d host1,host2,host3 -H does (a random host order per message,
the next host only when the connect fails, no cap on connections), as spamass-milter runs it.
spamd-cooldown is 5 s in host-dies (so the run stays short) and the default 30 s elsewhere.

Results: bench/results/pool.json and pool.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.pool_harness import (
    POOLS,
    AsideWatch,
    Fleet,
    Outcome,
    closed_loop,
    make_subject,
    open_loop,
    percentile,
    serve_fleet,
    set_asides,
    timed_closed_loop,
)
from bench.spamdcost import _as_spamd_sees_it
from spambridge.spamd.endpoints import parse_spamd_socket
from spambridge.spamd.pool import SpamdPool

RESULTS_DIR = Path(__file__).with_name("results")

HETEROGENEOUS = ((2, 0.080), (2, 0.040), (2, 0.020))  # (children, seconds per message)
EQUAL = ((2, 0.040), (2, 0.040), (2, 0.040))
SENDERS, PER_SENDER = 30, 40
RATE = 75.0  # messages/s in the open-loop scenarios: half of EQUAL's 150
SLOW_BEFORE, SLOW_AFTER, SLOW_FACTOR = 6.0, 14.0, 10.0
DIE_AT, BACK_AT, DIE_END = 5.0, 12.0, 22.0
DIE_COOLDOWN = 5.0
WARMUP = 1.0  # seconds at the start of an open loop left out of "before"
# Gray failure: a host slow for scans only (the fakes answer PING at once whatever their
# service time), as a spamd stuck on DNS: 3 hosts of 2 children at 20 ms,
# 30 MTA connections in a closed loop, spamd-max-connections 30 (every sender in flight).
GRAY = ((2, 0.020), (2, 0.020), (2, 0.020))
GRAY_SENDERS, GRAY_MAX_CONNECTIONS, GRAY_FACTOR, GRAY_COOLDOWN = 30, 30, 10.0, 5.0
GRAY_RUN = 60.0  # slow from the start
GRAY_MID_AT, GRAY_MID_RUN = 20.0, 50.0  # slow from 20 s on
GRAY_FLOOR_RUN = 30.0  # the two healthy hosts alone
SUBJECTS = ("least-loaded", "round-robin", "random", "failover", "spamc-style")
SCENARIOS = (
    "heterogeneous",
    "slow-host",
    "host-dies",
    "gray",
    "gray-mid",
    "gray-floor",
    "spamd-child",
)
SPAMD_CHILD_MESSAGES = 40  # per child, in the spamd-child scenario


def capacity(spec: Sequence[tuple[int, float]]) -> float:
    return sum(children / seconds for children, seconds in spec)


# ------------------------------------------------------------------ scenarios


@dataclass
class Row:
    scenario: str
    subject: str
    figures: dict[str, Any] = field(default_factory=dict)


async def measured_capacity(addresses: Sequence[str], message: bytes) -> float:
    """Each fake host alone, kept busy by 8 senders for 2 s: messages/s summed. The check
    that the fleet delivers its nominal capacity on this machine at this moment."""
    total = 0.0
    for address in addresses:
        pool = SpamdPool([parse_spamd_socket(address)], max_connections=8)
        stop = time.monotonic() + 2.0
        done = 0

        async def sender(pool: SpamdPool = pool, stop: float = stop) -> None:
            nonlocal done
            while time.monotonic() < stop:
                await pool.scan(message, command="REPORT")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(8)))
        total += done / (time.monotonic() - started)
        await pool.close()
    return total


async def heterogeneous(subject: str, message: bytes) -> Row:
    async with Fleet(HETEROGENEOUS) as fleet:
        measured = await measured_capacity(fleet.addresses, message)
        weights = (1, 2, 4) if subject.endswith("+weights") else ()
        scan, _, close = make_subject(subject, fleet.addresses, weights=weights)
        started = time.monotonic()
        out, steady_end = await closed_loop(scan, message, SENDERS, PER_SENDER)
        wall = time.monotonic() - started
        aside = set_asides(POOLS[-1], fleet.addresses)
        await close()
    # Steady state: from WARMUP until the first sender is done (all 30 sending meanwhile).
    done_in = [o for o in out if WARMUP <= o.sent + o.latency < steady_end]
    rate = len(done_in) / (steady_end - WARMUP) if steady_end > WARMUP + 1 else len(out) / wall
    share = {a: sum(o.host == a for o in out) for a in fleet.addresses}
    return Row(
        "heterogeneous",
        subject,
        {
            "messages": len(out),
            "lost": sum(o.host is None for o in out),
            "msgs_per_s": round(rate, 1),
            "capacity": capacity(HETEROGENEOUS),
            "fraction": round(rate / capacity(HETEROGENEOUS), 3),
            "fraction_whole_run": round(len(out) / wall / capacity(HETEROGENEOUS), 3),
            "capacity_measured": round(measured, 1),
            "fraction_of_measured": round(rate / measured, 3),
            "p50_ms": round(percentile([o.latency for o in out], 0.5) * 1000, 1),
            "p99_ms": round(percentile([o.latency for o in out], 0.99) * 1000, 1),
            "share_1_2_4": [share[a] for a in fleet.addresses],
            "set_aside": aside,
        },
    )


async def slow_host(subject: str, message: bytes) -> Row:
    async with Fleet(EQUAL) as fleet:
        scan, _, close = make_subject(subject, fleet.addresses)
        slow = fleet.addresses[0]

        slowed = 0.0

        async def slow_down() -> None:
            nonlocal slowed
            await fleet.command(f"speed 0 {SLOW_FACTOR}")
            slowed = time.monotonic()

        out, unanswered = await open_loop(
            scan, message, RATE, SLOW_BEFORE + SLOW_AFTER, [(SLOW_BEFORE, slow_down)]
        )
        last_to_slow = float(await fleet.command("last 0")) - slowed
        await close()
    before = [o.latency for o in out if WARMUP <= o.sent < SLOW_BEFORE]
    after = [o.latency for o in out if o.sent >= SLOW_BEFORE]
    answered_by_slow = [o for o in out if o.sent >= SLOW_BEFORE and o.host == slow]
    end = SLOW_BEFORE + SLOW_AFTER
    # Routed around: the slow host accepted its last connection well before the end.
    routed = last_to_slow < SLOW_AFTER - 2.0
    p99_before = percentile(before, 0.99)
    p99_after = percentile(after, 0.99)
    return Row(
        "slow-host",
        subject,
        {
            "messages": len(out),
            "lost": sum(o.host is None for o in out),
            "unanswered_at_cutoff": unanswered,
            "p50_before_ms": round(percentile(before, 0.5) * 1000, 1),
            "p99_before_ms": round(p99_before * 1000, 1),
            "p50_after_ms": round(percentile(after, 0.5) * 1000, 1),
            "p99_after_ms": round(p99_after * 1000, 1),
            "p99_rise": round(p99_after / p99_before - 1, 3),
            "answered_by_slow_host_after": len(answered_by_slow),
            "route_around_s": round(max(0.0, last_to_slow), 2) if routed else None,
            "window_s": end,
        },
    )


async def host_dies(subject: str, message: bytes) -> Row:
    async with Fleet(EQUAL) as fleet:
        scan, failovers, close = make_subject(subject, fleet.addresses, cooldown=DIE_COOLDOWN)
        victim = fleet.addresses[0]

        async def down() -> None:
            await fleet.command("down 0")

        async def up() -> None:
            await fleet.command("up 0")

        out, unanswered = await open_loop(
            scan, message, RATE, DIE_END, [(DIE_AT, down), (BACK_AT, up)]
        )
        count = failovers()
        await close()
    answered_again = [
        o.sent + o.latency - BACK_AT
        for o in out
        if o.host == victim and o.sent + o.latency > BACK_AT
    ]
    return Row(
        "host-dies",
        subject,
        {
            "messages": len(out),
            "lost": sum(o.host is None for o in out),
            "unanswered_at_cutoff": unanswered,
            "failovers": count,
            "reuse_after_s": round(min(answered_again), 2) if answered_again else None,
            "cooldown_s": DIE_COOLDOWN if subject != "spamc-style" else None,
            "p99_ms": round(percentile([o.latency for o in out], 0.99) * 1000, 1),
        },
    )


def _gray_figures(
    out: Sequence[Outcome], duration: float, pool: SpamdPool | None, addresses: Sequence[str]
) -> dict[str, Any]:
    latencies = [o.latency for o in out]
    done = [o for o in out if o.sent + o.latency <= duration]
    aside = set_asides(pool, addresses)
    figures: dict[str, Any] = {
        "messages": len(out),
        "lost": sum(o.host is None for o in out),
        "msgs_per_s": round(len(done) / duration, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "p999_ms": round(percentile(latencies, 0.999) * 1000, 1),
        "max_ms": round(max(latencies, default=0.0) * 1000, 1),
        "set_aside": aside,
    }
    figures["probations"] = (
        [f"{h.probations['passed']}/{h.probations['failed']}" for h in pool.hosts.hosts]
        if pool is not None
        else None
    )
    return figures


async def gray(subject: str, message: bytes) -> Row:
    """One host slow for scans only (PING instant) for the whole run."""
    async with Fleet(GRAY) as fleet:
        await fleet.command(f"speed 0 {GRAY_FACTOR}")
        scan, _, close = make_subject(
            subject,
            fleet.addresses,
            cooldown=GRAY_COOLDOWN,
            max_connections=GRAY_MAX_CONNECTIONS,
        )
        pool = POOLS[-1]
        with AsideWatch(pool) as watch:
            out = await timed_closed_loop(scan, message, GRAY_SENDERS, GRAY_RUN)
        await close()
    figures = _gray_figures(out, GRAY_RUN, pool, fleet.addresses)
    slow = fleet.addresses[0]
    figures["slow_host_scans"] = sum(o.host == slow for o in out)
    figures["set_aside_at_s"] = watch.times if pool is not None else None
    figures["run_s"] = GRAY_RUN
    return Row("gray", subject, figures)


async def gray_mid(subject: str, message: bytes) -> Row:
    """The same hosts, all healthy until GRAY_MID_AT, then the first slow for scans only."""
    async with Fleet(GRAY) as fleet:
        scan, _, close = make_subject(
            subject,
            fleet.addresses,
            cooldown=GRAY_COOLDOWN,
            max_connections=GRAY_MAX_CONNECTIONS,
        )
        pool = POOLS[-1]

        async def slow_down() -> None:
            await fleet.command(f"speed 0 {GRAY_FACTOR}")

        with AsideWatch(pool) as watch:
            out = await timed_closed_loop(
                scan, message, GRAY_SENDERS, GRAY_MID_RUN, [(GRAY_MID_AT, slow_down)]
            )
        await close()
    figures = _gray_figures(out, GRAY_MID_RUN, pool, fleet.addresses)
    before = [o.latency for o in out if WARMUP <= o.sent < GRAY_MID_AT]
    after = [o.latency for o in out if o.sent >= GRAY_MID_AT]
    figures["p99_before_ms"] = round(percentile(before, 0.99) * 1000, 1)
    figures["p99_after_ms"] = round(percentile(after, 0.99) * 1000, 1)
    figures["msgs_per_s_after"] = round(
        sum(GRAY_MID_AT <= o.sent + o.latency <= GRAY_MID_RUN for o in out)
        / (GRAY_MID_RUN - GRAY_MID_AT),
        1,
    )
    figures["set_aside_at_s"] = (
        [round(t - GRAY_MID_AT, 2) for t in watch.times] if pool is not None else None
    )
    figures["slow_from_s"] = GRAY_MID_AT
    figures["run_s"] = GRAY_MID_RUN
    return Row("gray-mid", subject, figures)


async def gray_floor(subject: str, message: bytes) -> Row:
    """The floor: the two healthy hosts alone at the same load."""
    async with Fleet(GRAY[1:]) as fleet:
        scan, _, close = make_subject(
            subject,
            fleet.addresses,
            cooldown=GRAY_COOLDOWN,
            max_connections=GRAY_MAX_CONNECTIONS,
        )
        pool = POOLS[-1]
        out = await timed_closed_loop(scan, message, GRAY_SENDERS, GRAY_FLOOR_RUN)
        await close()
    figures = _gray_figures(out, GRAY_FLOOR_RUN, pool, fleet.addresses)
    figures["run_s"] = GRAY_FLOOR_RUN
    return Row("gray-floor", subject, figures)


async def spamd_child() -> list[Row]:
    """Real spamd (-L, no Bayes), 5 KB ham messages sent straight to it: messages/s with one
    child and one sender, and with one child per core and as many senders. The sizing
    figure of the README."""
    import shutil
    import tempfile

    from bench.smtpload import run_spamd
    from tools import stack

    if shutil.which("spamd") is None:
        print("    spamd not installed: spamd-child skipped", file=sys.stderr)
        return []
    rows = []
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-spamd-") as tmp:
        for children in sorted({1, cores}):
            spamd = stack.start_spamd(Path(tmp) / f"spamd{children}", children=children)
            try:
                await run_spamd(spamd.port, total=4 * children, concurrency=children)  # warm-up
                result = await run_spamd(
                    spamd.port,
                    total=SPAMD_CHILD_MESSAGES * children,
                    concurrency=children,
                )
            finally:
                spamd.stop()
            rows.append(
                Row(
                    "spamd-child",
                    f"{children} child(ren), {children} sender(s)",
                    {
                        "messages": SPAMD_CHILD_MESSAGES * children,
                        "errors": result.errors,
                        "msgs_per_s": round(result.rate, 2),
                        "msgs_per_s_per_child": round(result.rate / children, 2),
                        "p50_ms": round(result.percentile(50) * 1000, 1),
                        "cores": cores,
                    },
                )
            )
    return rows


# ------------------------------------------------------------------ report


def targets(rows: Sequence[Row]) -> list[str]:
    got = {(r.scenario, r.subject): r.figures for r in rows}
    lines = []
    het = got.get(("heterogeneous", "least-loaded"))
    peer = got.get(("heterogeneous", "spamc-style"))
    if het:
        verdict = "met" if het["fraction"] >= 0.95 else "missed"
        lines.append(f"least-loaded >= 95 % of summed capacity: {het['fraction']:.3f} ({verdict})")
        if peer:
            beats = "met" if het["fraction"] > peer["fraction"] else "missed"
            lines.append(f"  beats spamc-style ({peer['fraction']:.3f}): {beats}")
    slow = got.get(("slow-host", "least-loaded"))
    speer = got.get(("slow-host", "spamc-style"))
    if slow:
        verdict = "met" if slow["p99_rise"] <= 0.25 else "missed"
        lines.append(
            f"least-loaded p99 rise with one slow host <= 25 %: "
            f"{slow['p99_before_ms']} -> {slow['p99_after_ms']} ms, "
            f"{slow['p99_rise'] * 100:+.0f} % ({verdict})"
        )
        if speer:
            beats = "met" if slow["p99_after_ms"] < speer["p99_after_ms"] else "missed"
            lines.append(f"  beats spamc-style (p99 after {speer['p99_after_ms']} ms): {beats}")
    for subject in SUBJECTS:
        sick, mid, floor = (
            got.get(("gray", subject)),
            got.get(("gray-mid", subject)),
            got.get(("gray-floor", subject)),
        )
        if sick and floor:
            p99 = sick["p99_ms"] / floor["p99_ms"]
            rate = sick["msgs_per_s"] / floor["msgs_per_s"]
            verdict = "met" if p99 <= 1.25 and rate >= 0.95 else "missed"
            lines.append(
                f"{subject}: one host slow for scans only: p99 {sick['p99_ms']} ms = "
                f"{p99:.2f} x the floor's {floor['p99_ms']} ms (<= 1.25), {sick['msgs_per_s']} "
                f"msg/s = {rate:.2f} x the floor's {floor['msgs_per_s']} (>= 0.95) ({verdict})"
            )
        if sick and sick["set_aside"] is not None:
            limit = math.log2(GRAY_RUN / GRAY_COOLDOWN) + 1
            times = sick["set_aside"][0]
            verdict = "met" if 1 <= times <= limit else "missed"
            lines.append(
                f"{subject}: slow host set aside {times} times in {GRAY_RUN:g} s "
                f"(1 .. log2({GRAY_RUN:g}/{GRAY_COOLDOWN:g})+1 = {limit:.1f}) ({verdict})"
            )
        if mid and floor:
            p99 = mid["p99_after_ms"] / floor["p99_ms"]
            verdict = "met" if p99 <= 1.25 else "missed"
            lines.append(
                f"{subject}: slow from mid-run: p99 after {mid['p99_after_ms']} ms = "
                f"{p99:.2f} x the floor's ({verdict})"
            )
        healthy = [
            (scenario, sum(row["set_aside"][skip:]))
            for scenario, skip in (("heterogeneous", 0), ("gray-floor", 0), ("gray", 1))
            if (row := got.get((scenario, subject))) and row["set_aside"] is not None
        ]
        if healthy:
            verdict = "met" if all(n == 0 for _, n in healthy) else "missed"
            lines.append(
                f"{subject}: healthy hosts set aside: "
                + ", ".join(f"{n} in {scenario}" for scenario, n in healthy)
                + f" ({verdict})"
            )
        dies = got.get(("host-dies", subject))
        if dies and subject != "spamc-style":
            verdict = "met" if dies["lost"] == 0 else "missed"
            lines.append(f"{subject}: messages lost when a host dies: {dies['lost']} ({verdict})")
    return lines


def markdown(rows: Sequence[Row], meta: dict[str, Any]) -> str:
    out = [
        "# Pool phase (`python -m bench.pool`)",
        "",
        f"{meta['when']}, {meta['cpus']} CPUs, Python {meta['python']}.",
        "",
    ]
    for scenario in SCENARIOS:
        chosen = [r for r in rows if r.scenario == scenario]
        if not chosen:
            continue
        keys = list(chosen[0].figures)
        out += [f"## {scenario}", "", "| subject | " + " | ".join(keys) + " |"]
        out.append("| --- " * (len(keys) + 1) + "|")
        for r in chosen:
            out.append(f"| {r.subject} | " + " | ".join(str(r.figures.get(k)) for k in keys) + " |")
        out.append("")
    out += ["## Targets", "", *(f"- {line}" for line in targets(rows)), ""]
    return "\n".join(out)


async def run(scenarios: Sequence[str], subjects: Sequence[str]) -> list[Row]:
    message = _as_spamd_sees_it(5 * 1024)
    rows: list[Row] = []
    for scenario in scenarios:
        if scenario == "spamd-child":
            print(f"[{time.strftime('%H:%M:%S')}] spamd-child", file=sys.stderr, flush=True)
            for row in await spamd_child():
                print(f"    {json.dumps(row.figures)}", file=sys.stderr, flush=True)
                rows.append(row)
            continue
        names = list(subjects)
        if scenario == "heterogeneous" and "least-loaded" in names:
            names.insert(names.index("least-loaded") + 1, "least-loaded+weights")
        for name in names:
            print(f"[{time.strftime('%H:%M:%S')}] {scenario}: {name}", file=sys.stderr, flush=True)
            if scenario == "heterogeneous":
                row = await heterogeneous(name, message)
            elif scenario == "slow-host":
                row = await slow_host(name, message)
            elif scenario == "gray":
                row = await gray(name, message)
            elif scenario == "gray-mid":
                row = await gray_mid(name, message)
            elif scenario == "gray-floor":
                row = await gray_floor(name, message)
            else:
                row = await host_dies(name, message)
            print(f"    {json.dumps(row.figures)}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pool", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--subjects", default=",".join(SUBJECTS))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--fleet", help=argparse.SUPPRESS)  # internal: run the fake spamds
    args = parser.parse_args(argv)
    if args.fleet:
        spec = [(int(c), float(s)) for c, s in (e.split("x") for e in args.fleet.split(","))]
        asyncio.run(serve_fleet(spec))
        return 0
    scenarios = [s for s in args.scenarios.split(",") if s]
    subjects = [s for s in args.subjects.split(",") if s]
    for name in (*scenarios, *subjects):
        if name not in (*SCENARIOS, *SUBJECTS):
            parser.error(f"unknown scenario or subject {name!r}")
    rows = asyncio.run(run(scenarios, subjects))
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pool.json").write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1) + "\n"
    )
    text = markdown(rows, meta)
    (args.out / "pool.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
