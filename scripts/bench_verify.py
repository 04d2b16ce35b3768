"""`voxgate verify` cold and warm: wall time and peak resident memory, as ratios to the clip's duration.

Renders one released clip of about 60 s (real pipeline), takes a distributor's
copy, and checks three files: the copy itself (AUTHENTIC by its bytes), an
Opus 24k re-encode (DERIVED: every check runs) and a splice of 2 s of it with
other speech (UNKNOWN: 2 of 24 s is too little to vouch for anything, and the
window search runs). Cold is the median of three fresh `voxgate verify`
processes (peak RSS from the kernel); warm is a second check in one process that already ran
one (the portal's worker). `--code DIR` runs the cold CLI from another checkout,
to measure before and after a change on the same workspace:

    .venv/bin/python scripts/bench_verify.py [--code ../other-checkout] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

TEXT = " ".join([
    "We ask the court to hear the case in public, and we thank everyone who stood with us this year.",
    "Our lawyers will speak to the press on Monday morning, after the hearing, and answer every question.",
    "Nobody should be held for speaking in public, and nobody should be tried behind closed doors.",
    "We have written to the ministry three times and we have not received a single answer.",
    "Please share this message with your friends and your family, and ask them to come to the square.",
    "We will stay peaceful, we will stay together, and we will keep asking for a fair and open trial.",
    "Thank you for your letters, your songs and your patience. We hear you, and we are not afraid.",
    "The families of the prisoners have waited outside the gate every day since the first hearing.",
    "Their children ask when their parents will come home, and nobody can give them an answer yet.",
    "Stand with them, speak for them, and remember their names until every one of them walks free.",
])


def build(root: Path) -> tuple[Path, Path, float]:
    """A workspace with one released clip of about a minute; (home, a distributor's mp3 copy, its seconds)."""
    from conftest import DEMO_VOICE, ORG, PEOPLE
    from pipeline.domain import Decision
    from pipeline.export.probe import probe
    from pipeline.services import clips, review, statements, users, voices
    from pipeline.services.render import Tools, render_statement
    from pipeline.services.workspace import init_workspace, utcnow

    os.environ["VOXGATE_KEYS"] = str(root / "keys")  # people's keys, outside the workspace
    os.environ.setdefault("VOXGATE_PASSPHRASE", "bench passphrase")
    ws, _ = init_workspace(root / "ws", ORG, now=utcnow())
    for name, role in PEOPLE.items():
        users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    voices.add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=TEXT, actor="sam", now=utcnow()).id
    review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    clip_id = render_statement(ws, sid, Tools(), actor="rita", now=utcnow()).clip_id
    review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    out = root / "out"
    out.mkdir()
    copy = clips.export_clip(ws, clip_id, "mp3", out, actor="dana", now=utcnow())
    return ws.home, copy, probe(copy).duration


def attacks(copy: Path, root: Path) -> dict[str, Path]:
    """More files for the per-second table (checked warm only): re-encodes, cuts, splices, overlays."""
    import numpy as np
    import soundfile as sf

    from pipeline.audio.loudness import measure
    from pipeline.export.probe import decode

    ffmpeg = ["ffmpeg", "-v", "error", "-y"]
    out: dict[str, Path] = {}
    for name, args, ext in (("MP3 64k", ["-c:a", "libmp3lame", "-b:a", "64k"], "mp3"),
                            ("Opus 12k", ["-c:a", "libopus", "-b:a", "12k"], "ogg"),
                            ("AAC 48k", ["-c:a", "aac", "-b:a", "48k"], "m4a"),
                            ("first 5 s cut, MP3", ["-ss", "5", "-c:a", "libmp3lame"], "mp3"),
                            ("10 s excerpt, Opus 24k", ["-ss", "20", "-t", "10", "-c:a", "libopus", "-b:a", "24k"], "ogg")):
        dest = root / f"attack-{len(out)}.{ext}"
        subprocess.run([*ffmpeg, "-i", str(copy), *args, str(dest)], check=True)
        out[name] = dest
    clip, rate = decode(copy)
    fake, fake_rate = decode(root / "fake.wav", rate)
    fake = np.resize(fake, len(clip))
    for keep_s in (2, 10, 30, 50):
        dest = root / f"splice-{keep_s}.wav"
        sf.write(dest, np.concatenate([clip[:keep_s * rate], fake[:max(0, 60 - keep_s) * rate]]), rate)
        out[f"{keep_s} s of the copy, then other speech to 60 s"] = dest
    for under_db in (12, 18, 24):
        gain = 10 ** ((measure(clip, rate).integrated_lufs - under_db - measure(fake, rate).integrated_lufs) / 20)
        dest = root / f"overlay-{under_db}.wav"
        sf.write(dest, clip + gain * fake, rate)
        out[f"other speech mixed over it, {under_db} dB under"] = dest
    return out


def suspects(copy: Path, root: Path) -> dict[str, Path]:
    ffmpeg = ["ffmpeg", "-v", "error", "-y"]
    opus = root / "reencode.ogg"
    subprocess.run([*ffmpeg, "-i", str(copy), "-c:a", "libopus", "-b:a", "24k", str(opus)], check=True)
    fake = root / "fake.wav"
    subprocess.run(["espeak-ng", "-w", str(fake), TEXT[:400]], check=True)
    splice = root / "splice.mp3"
    subprocess.run([*ffmpeg, "-i", str(copy), "-i", str(fake), "-filter_complex",
                    "[0]atrim=0:2,aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[a];"
                    "[1]aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[b];[a][b]concat=n=2:v=0:a=1",
                    str(splice)], check=True)
    return {"copy as handed out": copy, "Opus 24k re-encode": opus, "2 s spliced before other speech": splice}


def cold(code: Path, home: Path, path: Path, runs: int = 3) -> tuple[float, float, int]:
    """Fresh `voxgate verify` processes: (median seconds, peak RSS in MB, exit status).

    As installed: Python's bytecode caches may be written (a first, untimed run writes them), and the
    file is in the page cache.
    """
    script = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
              "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
              "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPATH": str(code)}
    cli = [sys.executable, "-c", "import sys; from pipeline.cli.main import main; sys.argv[0] = 'voxgate'; main()"]
    measured = []
    for _ in range(runs + 1):
        out = subprocess.run([sys.executable, "-c", script, *cli, "verify", str(path), "--home", str(home)],
                             capture_output=True, text=True, env=env, check=True, cwd=code)  # cwd: its own code first
        seconds, kb, rc = out.stdout.split()
        measured.append((float(seconds), int(kb) / 1024, int(rc)))
    timed = measured[1:]
    return statistics.median(t for t, _, _ in timed), max(m for _, m, _ in timed), timed[0][2]


def warm(home: Path, paths: dict[str, Path]) -> dict[str, tuple[float, Any]]:
    """Each file checked again in one process that has already checked it once: (seconds, the report)."""
    from pipeline.services.verify import verify_file
    from pipeline.services.workspace import open_workspace, utcnow

    ws = open_workspace(home)
    times = {}
    for name, path in paths.items():
        verify_file(ws, path, now=utcnow(), record=False)
        t0 = time.perf_counter()
        report = verify_file(ws, path, now=utcnow(), record=False)
        times[name] = time.perf_counter() - t0, report
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose CLI runs the cold checks")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the workspace here instead of a temp folder")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from pipeline.verify.match import Block

    console = Console()
    with tempfile.TemporaryDirectory(prefix="voxgate-bench-verify-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if (root / "ws").exists():
            from pipeline.export.probe import probe

            home, copy = root / "ws", next((root / "out").glob("*.mp3"))
            duration = probe(copy).duration
        else:
            console.print("building a workspace with a released clip of about 60 s (real render)…")
            home, copy, duration = build(root)
        paths = suspects(copy, root)
        warm_s = warm(home, {**paths, **attacks(copy, root)})
        table = Table(title=f"voxgate verify of a {duration:.0f} s clip, code from {args.code}, "
                            f"{os.cpu_count()} cores")
        for col in ("file", "exit", "cold s", "cold × clip", "peak RSS MB", "MB per clip s", "warm s", "warm × clip"):
            table.add_column(col, justify="left" if col == "file" else "right")
        for name, path in paths.items():
            seconds, rss, rc = cold(args.code, home, path)
            table.add_row(name, str(rc), f"{seconds:.2f}", f"{seconds / duration:.3f}", f"{rss:.0f}",
                          f"{rss / duration:.1f}", f"{warm_s[name][0]:.2f}", f"{warm_s[name][0] / duration:.3f}")
        console.print(table)
        shares = Table(title="second by second (warm): the verdict, the genuine share of audible seconds, the map")
        for col in ("file", "verdict", "genuine", "mixed s", "warm s", "map (█ genuine ▒ mixed ░ not found · silent)"):
            shares.add_column(col, justify="left" if col in ("file", "verdict") or col.startswith("map") else "right")
        for name, (seconds, report) in warm_s.items():
            t = report.verdict.timeline
            shares.add_row(name, report.verdict.outcome.value, "-" if t is None else f"{t.share:.0%}",
                           "-" if t is None else str(t.count(Block.MIXED)), f"{seconds:.2f}",
                           t.bar() if t is not None else "(whole by its bytes)" if report.verdict.outcome.value ==
                           "AUTHENTIC" else "-")
        console.print(shares)
        console.print("targets (issue 11): cold ≤ 4 s and ≤ 600 MB for 60 s (≤ 0.067× and ≤ 10 MB per clip "
                      "second), warm ≤ 1.5 s (≤ 0.025×)")


if __name__ == "__main__":
    main()
