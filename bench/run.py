"""Side-by-side benchmark of spambridge and its peers; one command reproduces every figure.

    python -m bench.run            # full run (about 22 minutes on 2 cores)
    python -m bench.run --quick    # one short pass of everything (about 2 minutes)

Phases: "isolated" (milter protocol driven directly, instant fake spamd), "spamdcost" and
"openloop" (the same, spamd client alone and at a fixed rate), "memory" (idle RSS, 1,000 idle
connections, one 50 MB message), "mtapath" (Sendmail + instant fake spamd over SMTP),
"chain" (Sendmail + real spamd over SMTP) and "shared" (the scanning chains at once, one
spamd behind them all).
Subjects run in alternating passes so that drift hits them all alike. Results go to
bench/results/{results.json,results.md,plot.png}.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import report
from bench.loadgen import LoadResult, idle_connections, run_load, send_big
from bench.procstat import memory, tree_cpu_seconds, tree_rss_kb
from bench.smtpload import run_shared, run_smtp, run_spamd
from bench.subjects import REPO_ROOT, Running, build_c_filters, start_subject

if TYPE_CHECKING:
    from tools.stack import Mta

RESULTS_DIR = Path(__file__).with_name("results")
MESSAGE_SIZE = 5 * 1024
SUBJECT_NOFILE = 1024  # ulimit -n of every milter; spamass-milter's cost grows with it
MEMORY_NOFILE = 4096  # enough for 1,000 idle connections in every subject
IDLE_CONNECTIONS = 1000
BIG_MESSAGE = 50 * 1024 * 1024
SPAMD_MAX_SIZE_KB = 500  # spambridge's default spamd-max-size

Record = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    passes: int
    iso_total_c1: int
    iso_total_c50: int
    chain_total: int
    chain_concurrency: int = 8
    mtapath_total: int = 600
    shared_rounds: int = 4  # shared phase: rounds of shared_window seconds
    shared_window: float = 40.0
    shared_concurrency: int = 3  # SMTP sessions per path at once (three paths: 9)

    open_total: int = 600
    iso_min_seconds: float = 5.0  # isolated: each subject's run lasts at least this long


FULL = Plan(passes=3, iso_total_c1=300, iso_total_c50=2000, chain_total=100)
QUICK = Plan(
    passes=1,
    iso_total_c1=60,
    iso_total_c50=400,
    chain_total=40,
    mtapath_total=100,
    shared_rounds=1,
    shared_window=15.0,
    open_total=150,
    iso_min_seconds=0.0,
)
OPEN_SHARE = 0.5  # open-loop rate: this share of the slowest subject's closed-loop c=50 rate
OPEN_FALLBACK_RATE = 60.0  # msgs/s when the isolated phase did not run


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _raise_own_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@contextmanager
def fake_spamd() -> Iterator[int]:
    """The project's instant fake spamd in its own process; yields its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.fake_spamd", "--port", "0"],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        yield int(line.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def subjects(
    names: Sequence[str], spamd_port: int, workdir: Path, binaries: dict[str, Path], nofile: int
) -> Iterator[dict[str, Running]]:
    running: dict[str, Running] = {}
    try:
        for name in names:
            running[name] = start_subject(
                name, spamd_port, workdir / "logs", binaries=binaries, nofile=nofile
            )
        yield running
    finally:
        for subject in running.values():
            subject.stop()


def _rotated(names: Sequence[str], shift: int) -> list[str]:
    """The order for one round: rotated by `shift`, and reversed every other round, so a
    subject does not always run right after the same neighbour (spamd's Bayes journal
    syncs and the machine's load drift would otherwise favour one side)."""
    shift %= len(names)
    order = [*names[shift:], *names[:shift]]
    return order[::-1] if shift % 2 else order


def _measure(pid: int | None, load: LoadResult, cpu_before: float) -> Record:
    record: Record = dict(load.summary())
    if pid is not None:
        cpu = tree_cpu_seconds(pid) - cpu_before
        record["cpu_s"] = round(cpu, 4)
        record["cpu_s_per_1000"] = round(cpu / load.messages * 1000, 3) if load.messages else None
        record["hwm_kb"] = memory(pid).hwm_kb
    return record


# ------------------------------------------------------------------------------ phases


def isolated_phase(
    plan: Plan, names: Sequence[str], spamd_port: int, workdir: Path, binaries: dict[str, Path]
) -> list[Record]:
    scenarios = [(1, 1), (1, 20), (50, 1), (50, 20)]
    records: list[Record] = []
    with subjects(names, spamd_port, workdir, binaries, SUBJECT_NOFILE) as running:
        for subject in running.values():  # warm-up: imports, caches, thread pools
            asyncio.run(run_load(subject.address, total=50, concurrency=5, per_connection=5))
        for pass_no in range(plan.passes):
            for step, (conc, per_conn) in enumerate(scenarios):
                total = plan.iso_total_c1 if conc == 1 else plan.iso_total_c50
                for name in _rotated(names, pass_no + step):
                    subject = running[name]
                    before = tree_cpu_seconds(subject.pid)
                    load = _load_for(
                        plan.iso_min_seconds,
                        subject.address,
                        total=total,
                        concurrency=conc,
                        per_connection=per_conn,
                    )
                    record = _measure(subject.pid, load, before)
                    record.update(
                        phase="isolated",
                        backend="fake spamd",
                        scenario=f"c={conc} m/conn={per_conn}",
                        subject=name,
                        pass_no=pass_no,
                        nofile=subject.nofile,
                    )
                    records.append(record)
                    _log(
                        f"isolated {record['scenario']:<16} {name:<18} "
                        f"{record['msgs_per_s']:>8} msg/s p50 {record['p50_ms']} ms "
                        f"cpu {record['cpu_s_per_1000']} s/1000"
                    )
    return records


def _load_for(
    min_seconds: float,
    address: tuple[str, int],
    *,
    total: int,
    concurrency: int,
    per_connection: int,
) -> LoadResult:
    """`total` messages, repeated until at least `min_seconds` have passed.

    A fast subject would otherwise be measured over a fraction of a second (spambridge does
    300 messages at c=1 in under one), where one stall of this shared machine skews its CPU
    per message; the C filters' Nagle-bound runs take 15 s. Every subject gets a long enough
    sample.
    """
    merged = LoadResult()
    while True:
        part = asyncio.run(
            run_load(
                address,
                total=total,
                concurrency=concurrency,
                per_connection=per_connection,
                size=MESSAGE_SIZE,
                spam_ratio=0.1,
            )
        )
        merged.add(part)
        if merged.elapsed >= min_seconds or part.messages == 0:  # (nothing gets through)
            return merged


def open_rate(records: Sequence[Record]) -> float:
    """OPEN_SHARE of the slowest subject's median closed-loop rate at c=50 (all subjects alike)."""
    rates: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r["phase"] == "isolated" and r["scenario"].startswith("c=50 "):
            rates.setdefault((r["subject"], r["scenario"]), []).append(r["msgs_per_s"])
    if not rates:
        return OPEN_FALLBACK_RATE
    medians = [sorted(v)[len(v) // 2] for v in rates.values()]
    return round(max(5.0, OPEN_SHARE * min(medians)))


def openloop_phase(
    plan: Plan,
    names: Sequence[str],
    spamd_port: int,
    workdir: Path,
    binaries: dict[str, Path],
    rate: float,
) -> list[Record]:
    """Added latency at c=50 under a fixed sustainable rate (open loop), same for all."""
    records: list[Record] = []
    with subjects(names, spamd_port, workdir, binaries, SUBJECT_NOFILE) as running:
        for subject in running.values():
            asyncio.run(run_load(subject.address, total=50, concurrency=5, per_connection=5))
        for pass_no in range(plan.passes):
            for step, per_conn in enumerate((1, 20)):
                for name in _rotated(names, pass_no + step):
                    subject = running[name]
                    before = tree_cpu_seconds(subject.pid)
                    load = asyncio.run(
                        run_load(
                            subject.address,
                            total=plan.open_total,
                            concurrency=50,
                            per_connection=per_conn,
                            size=MESSAGE_SIZE,
                            spam_ratio=0.1,
                            rate=rate,
                        )
                    )
                    record = _measure(subject.pid, load, before)
                    record.update(
                        phase="openloop",
                        backend="fake spamd",
                        scenario=f"c=50 m/conn={per_conn} @ {rate:g}/s",
                        rate=rate,
                        subject=name,
                        pass_no=pass_no,
                        nofile=subject.nofile,
                    )
                    records.append(record)
                    _log(
                        f"openloop {record['scenario']:<22} {name:<18} "
                        f"{record['msgs_per_s']:>7} msg/s p50 {record['p50_ms']} "
                        f"p99 {record['p99_ms']} ms"
                    )
    return records


def spamdcost_phase(plan: Plan, spamd_port: int, with_uvloop: bool) -> list[Record]:
    """CPU of spambridge's spamd client alone (bench.spamdcost), per scan, c=1 and c=50."""
    records: list[Record] = []
    loops = ["asyncio", "uvloop"] if with_uvloop else ["asyncio"]
    for pass_no in range(plan.passes):
        for loop_name in loops:
            for conc in (1, 50):
                total = plan.iso_total_c1 * 2 if conc == 1 else plan.iso_total_c50
                out = subprocess.run(
                    [
                        *(sys.executable, "-m", "bench.spamdcost", "--port", str(spamd_port)),
                        *("--loop", loop_name, "--total", str(total)),
                        *("--concurrency", str(conc), "--size", str(MESSAGE_SIZE)),
                    ],
                    capture_output=True,
                    check=True,
                    cwd=REPO_ROOT,
                    env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
                    timeout=300,
                )
                record: Record = json.loads(out.stdout)
                record.update(phase="spamdcost", pass_no=pass_no)
                records.append(record)
                _log(f"spamdcost {loop_name} c={conc}: {record['cpu_s_per_1000']} s/1000 scans")
    return records


async def _memory_probe(subject: Running) -> Record:
    pid = subject.pid
    await asyncio.sleep(1.0)
    idle = memory(pid).rss_kb
    await run_load(subject.address, total=200, concurrency=10, per_connection=5)
    await asyncio.sleep(0.5)
    warm = memory(pid).rss_kb
    async with idle_connections(subject.address, IDLE_CONNECTIONS):
        await asyncio.sleep(1.0)
        loaded = memory(pid).rss_kb
    await asyncio.sleep(1.0)
    before_big = memory(pid)
    started = time.perf_counter()
    final = await send_big(subject.address, BIG_MESSAGE)
    big_seconds = time.perf_counter() - started
    after_big = memory(pid)
    return {
        "phase": "memory",
        "subject": subject.name,
        "nofile": subject.nofile,
        "idle_rss_kb": idle,
        "warm_rss_kb": warm,
        "rss_with_idle_conns_kb": loaded,
        "idle_conns": IDLE_CONNECTIONS,
        "kb_per_idle_conn": round((loaded - warm) / IDLE_CONNECTIONS, 2),
        "big_message_bytes": BIG_MESSAGE,
        "big_final": final,
        "big_seconds": round(big_seconds, 2),
        "rss_before_big_kb": before_big.rss_kb,
        "hwm_before_big_kb": before_big.hwm_kb,
        "hwm_after_big_kb": after_big.hwm_kb,
        # Peak reached while handling the big message, over the RSS just before it.
        "big_peak_rise_kb": max(0, after_big.hwm_kb - before_big.rss_kb),
        "tree_rss_kb": tree_rss_kb(pid),
    }


def memory_phase(
    names: Sequence[str], spamd_port: int, workdir: Path, binaries: dict[str, Path]
) -> list[Record]:
    records: list[Record] = []
    for name in names:
        with subjects([name], spamd_port, workdir, binaries, MEMORY_NOFILE) as running:
            record = asyncio.run(_memory_probe(running[name]))
        records.append(record)
        _log(
            f"memory {name:<18} idle {record['idle_rss_kb']} KB, "
            f"{record['kb_per_idle_conn']} KB/conn, 50 MB rise {record['big_peak_rise_kb']} KB"
        )
    return records


@contextmanager
def real_spamd(workdir: Path) -> Iterator[int]:
    """A private real spamd (5 children); yields its port."""
    from tools.stack import start_spamd

    spamd = start_spamd(workdir / "spamd", children=5)
    try:
        yield spamd.port
    finally:
        spamd.stop()


@contextmanager
def sendmails(
    milters: Mapping[str, Running], workdir: Path, prefix: str, *, bare: bool
) -> Iterator[dict[str, Mta]]:
    """A private Sendmail in front of each milter, keyed "sendmail + NAME" (and with `bare`
    one without a milter, "sendmail, no milter"), warmed up; all stopped on exit."""
    from tools.stack import start_sendmail

    mtas: dict[str, Mta] = {}
    try:
        if bare:
            mtas["sendmail, no milter"] = start_sendmail(workdir / f"{prefix}-none", None)
        for name, running in milters.items():
            mtas[f"sendmail + {name}"] = start_sendmail(workdir / f"{prefix}-{name}", running.spec)
        for mta in mtas.values():  # warm-up: spamd children, Sendmail's first fork
            asyncio.run(run_smtp(mta.port, total=4, concurrency=2))
        yield mtas
    finally:
        for mta in mtas.values():
            mta.stop()


def chain_phase(
    plan: Plan, workdir: Path, binaries: dict[str, Path], *, fake: bool = False
) -> list[Record]:
    """Sendmail in front of each milter over SMTP, at concurrency C.

    With real spamd (phase "chain"), plus spamd reached directly. With the instant fake
    spamd (phase "mtapath") what is left is the MTA-milter path itself, and spambridge
    runs a second time with +skip-body.
    """
    phase = "mtapath" if fake else "chain"
    total = plan.mtapath_total if fake else plan.chain_total
    records: list[Record] = []
    milter_names = ["nullfilter", "nullscan", "spamass-milter", "spambridge"]
    if fake:
        milter_names.append("spambridge-skip-body")
    with (
        fake_spamd() if fake else real_spamd(workdir) as spamd_port,
        subjects(milter_names, spamd_port, workdir, binaries, SUBJECT_NOFILE) as milters,
        sendmails(milters, workdir, phase, bare=True) as mtas,
    ):
        paths = [*mtas] if fake else [*mtas, "spamd directly"]
        for pass_no in range(plan.passes):
            for path in _rotated(paths, pass_no):
                milter = milters.get(path.removeprefix("sendmail + "))
                pid = milter.pid if milter else None
                before = tree_cpu_seconds(pid) if pid else 0.0
                conc = plan.chain_concurrency
                if path == "spamd directly":
                    load = asyncio.run(run_spamd(spamd_port, total=total, concurrency=conc))
                else:
                    load = asyncio.run(run_smtp(mtas[path].port, total=total, concurrency=conc))
                    mtas[path].clear_delivered()
                record = _measure(pid, load, before)
                record.update(
                    phase=phase,
                    backend="fake spamd" if fake else "real spamd",
                    scenario=f"c={conc}",
                    subject=path,
                    pass_no=pass_no,
                    nofile=milter.nofile if milter else None,
                )
                records.append(record)
                _log(
                    f"{phase} {path:<36} {record['msgs_per_s']:>7} msg/s "
                    f"p50 {record['p50_ms']} ms cpu {record.get('cpu_s_per_1000')} s/1000 "
                    f"finals {record['finals']}"
                )
    return records


def shared_phase(plan: Plan, workdir: Path, binaries: dict[str, Path]) -> list[Record]:
    """The scanning chains at the same time, sharing one real spamd.

    Run one after the other (the chain phase), the chains differ by less than spamd's
    drift between passes. Run together, each path gets the same spamd at the same moments;
    a path that costs more around the scan (CPU, round trips, stalls) completes fewer
    messages in the window.
    """
    names = ["nullscan", "spamass-milter", "spambridge"]
    records: list[Record] = []
    with (
        real_spamd(workdir) as spamd_port,
        subjects(names, spamd_port, workdir, binaries, SUBJECT_NOFILE) as milters,
        sendmails(milters, workdir, "shared", bare=False) as mtas,
    ):
        for round_no in range(plan.shared_rounds):
            before = {name: tree_cpu_seconds(m.pid) for name, m in milters.items()}
            loads = asyncio.run(
                run_shared(
                    {path: mta.port for path, mta in mtas.items()},
                    window=plan.shared_window,
                    concurrency=plan.shared_concurrency,
                )
            )
            for path, load in loads.items():
                name = path.removeprefix("sendmail + ")
                record = _measure(milters[name].pid, load, before[name])
                record.update(
                    phase="shared",
                    backend="real spamd",
                    scenario=f"c={plan.shared_concurrency} each",
                    subject=path,
                    pass_no=round_no,
                    nofile=milters[name].nofile,
                )
                records.append(record)
                _log(
                    f"shared {name:<16} {load.messages:>4} msgs in {plan.shared_window:.0f}s"
                    f" p50 {record['p50_ms']} ms cpu {record.get('cpu_s_per_1000')} s/1000"
                )
            for mta in mtas.values():
                mta.clear_delivered()
    return records


# ------------------------------------------------------------------------------ main


def _subject_names(with_uvloop: bool) -> list[str]:
    names = ["spambridge", "spamass-milter", "nullscan", "nullfilter"]
    if with_uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            _log("uvloop is not installed: skipping the spambridge-uvloop subject")
        else:
            names.insert(1, "spambridge-uvloop")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="one short pass (about 2 minutes)")
    parser.add_argument("--passes", type=int, default=None, help="override the number of passes")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop subject")
    parser.add_argument(
        "--phases",
        default="isolated,spamdcost,openloop,memory,mtapath,chain,shared",
        help="comma-separated subset of isolated,spamdcost,openloop,memory,mtapath,chain,shared",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.passes:
        plan = dataclasses.replace(plan, passes=args.passes)
    phases = set(args.phases.split(","))
    _raise_own_nofile()
    names = _subject_names(not args.no_uvloop)
    started = time.time()
    records: list[Record] = []
    workdir = Path(tempfile.mkdtemp(prefix="spambridge-bench-"))
    try:
        binaries = build_c_filters(workdir / "build")
        if phases & {"isolated", "spamdcost", "openloop", "memory"}:
            with fake_spamd() as port:
                if "isolated" in phases:
                    records += isolated_phase(plan, names, port, workdir, binaries)
                if "spamdcost" in phases:
                    records += spamdcost_phase(plan, port, "spambridge-uvloop" in names)
                if "openloop" in phases:
                    rate = open_rate(records)
                    records += openloop_phase(plan, names, port, workdir, binaries, rate)
                if "memory" in phases:
                    records += memory_phase(names, port, workdir, binaries)
        if "mtapath" in phases:
            if shutil.which("sendmail-mta"):
                records += chain_phase(plan, workdir, binaries, fake=True)
            else:
                _log("sendmail-mta missing: skipping the mtapath phase")
        if "chain" in phases:
            if shutil.which("spamd") and shutil.which("sendmail-mta"):
                records += chain_phase(plan, workdir, binaries)
            else:
                _log("spamd or sendmail-mta missing: skipping the chain phase")
        if "shared" in phases:
            if shutil.which("spamd") and shutil.which("sendmail-mta"):
                records += shared_phase(plan, workdir, binaries)
            else:
                _log("spamd or sendmail-mta missing: skipping the shared phase")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta = {
        "mode": "quick" if args.quick else "full",
        "plan": plan.__dict__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.release()}",
        "message_size": MESSAGE_SIZE,
        "subject_nofile": SUBJECT_NOFILE,
        "memory_nofile": MEMORY_NOFILE,
        "spamd_max_size_kb": SPAMD_MAX_SIZE_KB,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    summary = report.summarise(records)
    targets = report.targets(summary, records, SPAMD_MAX_SIZE_KB)
    document = {"meta": meta, "summary": summary, "targets": targets, "runs": records}
    (args.out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "results.md").write_text(report.markdown(meta, summary, targets, records))
    plotted = report.plot(summary, args.out / "plot.png")
    _log(
        f"done in {meta['duration_s']} s; results in {args.out}" + ("" if plotted else " (no plot)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
