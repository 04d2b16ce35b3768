"""Load: N one-sentence statements from submit to release with W workers, on SQLite and on PostgreSQL.

Each statement is submitted, text-approved by a reviewer and the owner's
delegate, rendered by one of W real `voxgate render --all` processes (each
runs the `render` queue while it waits: one render job per statement, taken
by whichever process is free), then
audio-approved, which releases it. A statement whose render a quality gate
refuses stays unreleased and is listed, as in real use; the run goes on. Prints
statements released per minute for each
database and where the time went (submit + text approvals, renders, audio
approvals and release), and the render phase against one warm
render in one process measured in the same run (the baseline).

    .venv/bin/python scripts/bench_load.py [--statements 200] [--workers 2] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def build(root: Path, database_url: str | None):  # type: ignore[no-untyped-def]
    from conftest import new_workspace  # one user per role and the demo voice, as the tests' workspaces

    root.mkdir(parents=True, exist_ok=True)
    return new_workspace(root / "ws", database_url)


def render_with(ws, workers: int) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    """Run `workers` render processes until the queue is empty; their wall time, and the end of the error
    output of each that exited non-zero. `render --all` goes on past a render a quality gate refused and
    exits 1 at the end: the store says which statements those were."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "render", "--all", "--home", str(ws.home),
                               "--as", "rita"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    errors = [err[-2000:] for proc in procs for _, err in [proc.communicate()] if proc.returncode != 0]
    return time.perf_counter() - start, errors


def run(kind: str, statements: int, workers: int, root: Path, cluster) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from pipeline.domain import Decision
    from pipeline.services import review
    from pipeline.services import statements as statements_
    from pipeline.services.auditing import audit_log
    from pipeline.services.workspace import utcnow

    ws = build(root / kind, cluster.new_database() if kind == "postgresql" else None)
    figures: dict[str, float] = {}

    def queue(count: int, first: int) -> list[int]:
        ids = []
        for n in range(first, first + count):
            sid = statements_.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                                     text=f"Message number {n + 1}: we ask for a fair and public trial.",
                                     actor="sam", now=utcnow()).id
            review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
            review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
            ids.append(sid)
        return ids

    # Baseline, same run, same database: one warm render in this process (a warm-up first, then the median of 3).
    from pipeline.services.render import render_statement
    from pipeline.services.tools import Tools

    tools, times = Tools(), []
    for sid in queue(4, 10_000):
        t0 = time.perf_counter()
        render_statement(ws, sid, tools, actor="rita", now=utcnow())
        times.append(time.perf_counter() - t0)
        review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    figures["one warm render s"] = sorted(times[1:])[1]

    start = time.perf_counter()
    ids = queue(statements, 0)
    figures["submit + text approvals"] = time.perf_counter() - start
    figures["renders"], errors = render_with(ws, workers)
    rendered = [sid for sid in ids if statements_.show_statement(ws, sid).state == "draft_ready"]
    refused = {int(e.subject): e.data.get("reason", "") for e in audit_log(ws)
               if e.action == "voxgate.statement.render_failed" and int(e.subject) not in rendered}
    if len(rendered) + len(refused) != statements:  # a statement neither rendered nor refused: a worker broke
        raise SystemExit(f"{kind}: {len(rendered)} rendered and {len(refused)} refused of {statements}: {errors}")
    t0 = time.perf_counter()
    for sid in rendered:
        review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())  # the audio approval releases it
    figures["audio approvals + release"] = time.perf_counter() - t0
    figures["total"] = time.perf_counter() - start
    figures["released"] = sum(statements_.show_statement(ws, sid).state == "released" for sid in ids)
    figures["refused"] = len(refused)
    for sid, reason in sorted(refused.items()):
        print(f"{kind}: statement {sid} refused: {reason}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from pg import Cluster, _bindir

    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    console = Console()
    results = {}
    with tempfile.TemporaryDirectory(prefix="voxgate-bench-load-") as tmp:
        os.environ["VOXGATE_KEYS"] = str(Path(tmp) / "keys")  # people's keys, outside the workspace
        os.environ.setdefault("VOXGATE_PASSPHRASE", "bench passphrase")
        cluster = None
        if "postgresql" in kinds:
            bindir = _bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL is not installed: run scripts/setup.sh, or pass --databases sqlite")
            cluster = Cluster(bindir).start()
        try:
            for kind in kinds:
                console.print(f"{kind}: {args.statements} statements, {args.workers} workers…")
                results[kind] = run(kind, args.statements, args.workers, Path(tmp), cluster)
        finally:
            if cluster is not None:
                cluster.stop()

    table = Table(title=f"{args.statements} one-sentence statements, submit → release, {args.workers} workers, "
                        f"{os.cpu_count()} cores")
    for column in ("database", "released", "refused by a gate", "statements/min", "submit + text approvals s",
                   "renders s", "audio approvals + release s", "total s", "render s/statement", "× one warm render"):
        table.add_column(column, justify="right")
    for kind, f in results.items():
        per = f["renders"] / args.statements
        table.add_row(kind, f"{f['released']:.0f}", f"{f['refused']:.0f}", f"{f['released'] / f['total'] * 60:.1f}",
                      f"{f['submit + text approvals']:.1f}", f"{f['renders']:.1f}", f"{f['audio approvals + release']:.1f}", f"{f['total']:.1f}",
                      f"{per:.2f}", f"{per / f['one warm render s']:.2f}")
    console.print(table)
    console.print("× one warm render: wall time per statement with all workers (their start-up included), against "
                  f"one warm render in one process in the same run; {args.workers} workers at full use would be "
                  f"{1 / args.workers:.2f}.")


if __name__ == "__main__":
    main()
