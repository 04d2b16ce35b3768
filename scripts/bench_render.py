"""Render speed: a statement of about 60 s of speech through the whole pipeline, against bare Piper.

The baseline is warm bare Piper synthesis of the same sentences, measured in
the same run and interleaved with the renders (one before each), so both see
the same machine load; every figure is the median of at least 3. Prints each
figure as a ratio against that baseline, and the target: a warm full render
within 3x warm bare synthesis. Then the CPU time of both (threads and ffmpeg
children), which says how busy the machine's cores were: where the render
keeps every core busy, only less work (not more overlap) makes it faster.

    .venv/bin/python scripts/bench_render.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.domain import Decision  # noqa: E402
from pipeline.services import review, statements, users, voices  # noqa: E402
from pipeline.services.render import STEPS, render_statement  # noqa: E402
from pipeline.services.tools import Tools  # noqa: E402
from pipeline.services.workspace import init_workspace, utcnow  # noqa: E402
from pipeline.synth import PiperEngine, packaged_voice  # noqa: E402
from pipeline.synth.text import normalise_for_speech, split_sentences  # noqa: E402

TEXT = " ".join([
    "I am writing to you from a place where I cannot speak for myself, so my friends speak for me.",
    "The charges against me are false, and every document my lawyers have filed shows it.",
    "For eleven months the hearings have been closed to the public and to the press.",
    "I ask only for what the constitution promises every citizen: an open trial before an independent judge.",
    "To my family, thank you for your patience and your courage.",
    "To the journalists who keep asking questions, please do not stop.",
    "To the people who stood outside the courthouse in the rain, I heard about you, and it gave me strength.",
    "We will not answer anger with anger.",
    "We will answer it with facts, with patience, and with the law.",
    "When this is over, I hope to thank each of you in my own voice.",
    "Until then, this message is read by a synthetic voice made with my consent, and labelled as such.",
    "Please share it only as it is, with its label, and check it before you believe any other.",
    "Forgeries of my voice have already appeared, and more will follow as the trial goes on.",
    "Every authentic message from me carries a watermark and a signed record of who approved it.",
    "If a recording asks you for money or for violence, it is not from me.",
])


TARGET: float = 3.0  # a warm full render within this many times warm bare synthesis (issue 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="warm renders and bare syntheses (median; at least 3)")
    args = parser.parse_args()
    repeat = max(3, args.repeat)
    console = Console()

    onnx, config = packaged_voice()
    engine = PiperEngine(onnx, config)
    engine.load()
    sentences = [normalise_for_speech(s, "en") for s in split_sentences(TEXT, "en")]
    chunks = engine.synthesize(sentences)  # warm-up, on the very text measured
    speech_s = sum(len(c) for c in chunks) / engine.sample_rate

    def bare_synthesis() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), cpu_seconds()
        engine.synthesize(sentences)
        return time.perf_counter() - t0, cpu_seconds() - c0

    with tempfile.TemporaryDirectory(prefix="voxgate-bench-") as tmp:
        os.environ["VOXGATE_KEYS"] = str(Path(tmp) / "keys")  # people's keys, outside the workspace
        os.environ.setdefault("VOXGATE_PASSPHRASE", "bench passphrase")
        ws, _ = init_workspace(Path(tmp) / "ws", "Free Voice Media (demo)", now=utcnow())
        for name, role in (("ops", "admin"), ("sam", "submitter"), ("rita", "reviewer"), ("joe-delegate", "delegate")):
            users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
        voices.add_voice(ws, REPO / "voices" / "demo", actor="ops", now=utcnow())
        tools = Tools()
        runs, bares = [], []
        for i in range(1 + repeat):
            sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                                    text=TEXT + f" ({i + 1})", actor="sam", now=utcnow()).id
            review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
            review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
            if i:
                bares.append(bare_synthesis())
            marks: list[tuple[str, float]] = []
            start, cpu_start = time.perf_counter(), cpu_seconds()
            result = render_statement(ws, sid, tools, actor="rita", now=utcnow(),
                                      progress=lambda step: marks.append((step, time.perf_counter())))
            end, cpu = time.perf_counter(), cpu_seconds() - cpu_start
            stages = {name: (marks[j + 1][1] if j + 1 < len(marks) else end) - t for j, (name, t) in enumerate(marks)}
            runs.append((end - start, stages, result.figures, cpu))

    bare = statistics.median(b[0] for b in bares)
    bare_cpu = statistics.median(b[1] for b in bares)
    cold_total, _, figures, _ = runs[0]
    warm = runs[1:]
    warm_total = statistics.median(r[0] for r in warm)
    warm_cpu = statistics.median(r[3] for r in warm)
    table = Table(title=f"Render of {speech_s:.1f} s of speech ({figures['duration_s']:.1f} s clip with disclosure), "
                        f"{os.cpu_count()} cores")
    for col in ("what", "seconds", "× bare Piper", "× real time"):
        table.add_column(col, justify="right" if col != "what" else "left")
    table.add_row(f"warm bare Piper synthesis (baseline, median of {len(bares)})", f"{bare:.2f}", "1.00",
                  f"{bare / speech_s:.3f}")
    table.add_row("full render, first (loads Perth, Whisper)", f"{cold_total:.2f}", f"{cold_total / bare:.2f}",
                  f"{cold_total / speech_s:.3f}")
    table.add_row(f"full render, warm (median of {len(warm)})", f"{warm_total:.2f}", f"{warm_total / bare:.2f}",
                  f"{warm_total / speech_s:.3f}")
    for step in STEPS:
        t = statistics.median(r[1].get(step, 0.0) for r in warm)
        table.add_row(f"  warm: {step}", f"{t:.2f}", f"{t / bare:.2f}", f"{t / speech_s:.3f}")
    console.print(table)
    ratio = warm_total / bare
    verdict = "meets" if ratio <= TARGET else "misses"
    console.print(f"warm full render / warm bare synthesis: {ratio:.2f}x ({verdict} the target of {TARGET:.0f}x); "
                  f"bare syntheses: {', '.join(f'{b[0]:.2f}' for b in bares)} s")
    cores = os.cpu_count() or 1
    console.print(f"CPU time (this process and its ffmpeg children): warm render {warm_cpu:.1f} s, bare synthesis "
                  f"{bare_cpu:.1f} s ({warm_cpu / bare_cpu:.2f}x); the render kept {warm_cpu / warm_total:.2f} of "
                  f"{cores} cores busy, bare synthesis {bare_cpu / bare:.2f}")


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished child processes (ffmpeg)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
