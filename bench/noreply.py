"""No-reply steps through real MTAs: spambridge with `milter-no-reply` on and off.

    python -m bench.noreply              # Sendmail and Postfix, 3 passes (about 6 minutes)
    python -m bench.noreply --quick      # one short pass (about 1 minute)

With `milter-no-reply` (the default) spambridge asks the MTA not to wait for a reply to the
steps it always continues (connect, HELO, MAIL, RCPT, DATA, headers, end of headers, body);
with `-milter-no-reply` it answers every step, as libmilter filters do. Each MTA (a private
Sendmail 8.17 with the shipped .mc milter line, a private Postfix 3.7 with the shipped
main.cf lines) runs in front of its own spambridge of each kind, the instant fake spamd behind
them all, so what is measured is the MTA-milter path itself. Load: bench.smtpload, one SMTP
session per message (EHLO, MAIL, one RCPT, DATA of a 5 KB message, QUIT), 8 sessions at a
time, the same count per path and pass; the paths run one after the other, in a rotated
order each pass. Reported per path (median over passes): messages per second, p50 and p99 of
the SMTP session, spambridge's CPU per message and the MTA's (their process trees, /proc).
"What NR saves" is the off/on difference per MTA.

Results: bench/results/noreply.json and noreply.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.procstat import tree_cpu_seconds
from bench.run import _rotated, fake_spamd
from bench.smtpload import run_smtp
from bench.subjects import Running, start_subject

RESULTS_DIR = Path(__file__).with_name("results")
MILTERS = ("spambridge", "spambridge-no-reply-off")
MTAS = ("sendmail", "postfix")
CONCURRENCY = 8
WARM_UP = 20


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@contextmanager
def paths(workdir: Path, spamd_port: int) -> Iterator[dict[str, tuple[Running, Any]]]:
    """Every MTA in front of its own spambridge of each kind: "MTA + milter" -> (milter, MTA)."""
    from tools import stack

    with ExitStack() as stop:
        out: dict[str, tuple[Running, Any]] = {}
        for mta in MTAS:
            for name in MILTERS:
                milter = start_subject(name, spamd_port, workdir / "logs")
                stop.callback(milter.stop)
                where = workdir / f"{mta}-{name}"
                if mta == "sendmail":
                    front = stack.start_sendmail(where, milter.spec)
                else:
                    front = stack.start_postfix(where, f"inet:127.0.0.1:{milter.port}")
                stop.callback(front.stop)
                asyncio.run(run_smtp(front.port, total=WARM_UP, concurrency=2))
                front.clear_delivered()
                out[f"{mta} + {name}"] = (milter, front)
        yield out


def measure(passes: int, total: int) -> list[dict[str, Any]]:
    from tools.stack import make_workdir

    workdir = make_workdir("spambridge-noreply-")  # 0755: Postfix's mail user goes through it
    try:
        return _measure(workdir, passes, total)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure(workdir: Path, passes: int, total: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with fake_spamd() as spamd_port, paths(workdir, spamd_port) as running:
        for pass_no in range(passes):
            for path in _rotated(list(running), pass_no):
                milter, mta = running[path]
                milter_cpu = tree_cpu_seconds(milter.pid)
                mta_cpu = tree_cpu_seconds(mta.proc.pid)
                load = asyncio.run(run_smtp(mta.port, total=total, concurrency=CONCURRENCY))
                record: dict[str, Any] = dict(load.summary())
                done = max(load.messages, 1)
                record.update(
                    path=path,
                    mta=path.split(" + ")[0],
                    milter_no_reply=not path.endswith("-no-reply-off"),
                    pass_no=pass_no,
                    milter_cpu_ms_per_msg=round(
                        (tree_cpu_seconds(milter.pid) - milter_cpu) / done * 1000, 3
                    ),
                    mta_cpu_ms_per_msg=round(
                        (tree_cpu_seconds(mta.proc.pid) - mta_cpu) / done * 1000, 3
                    ),
                )
                mta.clear_delivered()
                records.append(record)
                _log(
                    f"{path:<40} {record['msgs_per_s']:>7} msg/s p50 {record['p50_ms']} ms "
                    f"p99 {record['p99_ms']} ms milter cpu {record['milter_cpu_ms_per_msg']} "
                    f"ms/msg finals {record['finals']}"
                )
    return records


FIELDS = ("msgs_per_s", "p50_ms", "p99_ms", "milter_cpu_ms_per_msg", "mta_cpu_ms_per_msg")


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per path: the median of each figure over the passes, and the pass values."""
    out: dict[str, dict[str, Any]] = {}
    for path in dict.fromkeys(r["path"] for r in records):
        mine = [r for r in records if r["path"] == path]
        out[path] = {field: round(statistics.median(r[field] for r in mine), 3) for field in FIELDS}
        out[path]["passes"] = {field: [r[field] for r in mine] for field in FIELDS}
        out[path]["errors"] = sum(r["errors"] for r in mine)
    return out


def markdown(meta: dict[str, Any], summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# No-reply steps through real MTAs (`python -m bench.noreply`)",
        "",
        f"{meta['started']}, {meta['machine']}, Python {meta['python']}; {meta['passes']} "
        f"passes of {meta['per_pass']} messages per path, c={CONCURRENCY}, instant fake spamd; "
        "medians over the passes (pass values in brackets).",
        "",
        "| path | msg/s | p50 ms | p99 ms | spambridge CPU ms/msg | MTA CPU ms/msg | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, s in summary.items():
        runs = s["passes"]
        lines.append(
            f"| {path} | {s['msgs_per_s']} ({', '.join(str(v) for v in runs['msgs_per_s'])}) "
            f"| {s['p50_ms']} | {s['p99_ms']} | {s['milter_cpu_ms_per_msg']} "
            f"({', '.join(str(v) for v in runs['milter_cpu_ms_per_msg'])}) "
            f"| {s['mta_cpu_ms_per_msg']} | {s['errors']} |"
        )
    lines += ["", "What `milter-no-reply` saves per message (off minus on):", ""]
    lines += [
        "| MTA | msg/s on vs off | p50 ms saved | spambridge CPU ms saved |",
        "|---|---|---|---|",
    ]
    for mta in MTAS:
        on, off = (
            summary.get(f"{mta} + spambridge"),
            summary.get(f"{mta} + spambridge-no-reply-off"),
        )
        if on is None or off is None:
            continue
        ratio = on["msgs_per_s"] / off["msgs_per_s"] if off["msgs_per_s"] else float("nan")
        lines.append(
            f"| {mta} | {ratio:.2f}x | {off['p50_ms'] - on['p50_ms']:.1f} "
            f"| {off['milter_cpu_ms_per_msg'] - on['milter_cpu_ms_per_msg']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.noreply", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="one pass of 100 messages")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--total", type=int, default=300, help="messages per path and pass")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)
    passes, total = (1, 100) if args.quick else (args.passes, args.total)
    started = time.time()
    records = measure(passes, total)
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.release()}",
        "passes": passes,
        "per_pass": total,
        "concurrency": CONCURRENCY,
    }
    summary = summarise(records)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "summary": summary, "runs": records}
    (args.out / "noreply.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / "noreply.md").write_text(markdown(meta, summary))
    _log(f"done in {meta['duration_s']} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
