"""Render speed: a statement of about 60 s of speech through the whole pipeline, against bare Piper.

Prints each figure as a ratio against bare Piper synthesis of the same text,
measured in the same run on the same machine:

    .venv/bin/python scripts/bench_render.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="warm renders to average (default 2)")
    args = parser.parse_args()
    console = Console()

    onnx, config = packaged_voice()
    engine = PiperEngine(onnx, config)
    engine.load()
    sentences = [normalise_for_speech(s, "en") for s in split_sentences(TEXT, "en")]
    engine.synthesize(sentences[:1])  # warm-up
    t0 = time.perf_counter()
    chunks = engine.synthesize(sentences)
    bare = time.perf_counter() - t0
    speech_s = sum(len(c) for c in chunks) / engine.sample_rate

    with tempfile.TemporaryDirectory(prefix="voxgate-bench-") as tmp:
        ws, _ = init_workspace(Path(tmp) / "ws", "Free Voice Media (demo)", now=utcnow())
        for name, role in (("ops", "admin"), ("sam", "submitter"), ("rita", "reviewer"), ("joe-delegate", "delegate")):
            users.add_user(ws, name, role, actor="ops", now=utcnow())
        voices.add_voice(ws, REPO / "voices" / "demo", actor="ops", now=utcnow())
        tools = Tools()
        runs = []
        for i in range(1 + args.repeat):
            sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                                    text=TEXT + f" ({i + 1})", actor="sam", now=utcnow()).id
            review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
            review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
            marks: list[tuple[str, float]] = []
            start = time.perf_counter()
            result = render_statement(ws, sid, tools, actor="rita", now=utcnow(),
                                      progress=lambda step: marks.append((step, time.perf_counter())))
            end = time.perf_counter()
            stages = {name: (marks[j + 1][1] if j + 1 < len(marks) else end) - t for j, (name, t) in enumerate(marks)}
            runs.append((end - start, stages, result.figures))

    cold_total, _, figures = runs[0]
    warm = runs[1:]
    warm_total = sum(r[0] for r in warm) / len(warm)
    table = Table(title=f"Render of {speech_s:.1f} s of speech ({figures['duration_s']:.1f} s clip with disclosure)")
    for col in ("what", "seconds", "× bare Piper", "× real time"):
        table.add_column(col, justify="right" if col != "what" else "left")
    table.add_row("bare Piper synthesis (baseline)", f"{bare:.2f}", "1.00", f"{bare / speech_s:.3f}")
    table.add_row("full render, first (loads Perth, Whisper)", f"{cold_total:.2f}", f"{cold_total / bare:.2f}",
                  f"{cold_total / speech_s:.3f}")
    table.add_row(f"full render, warm (mean of {len(warm)})", f"{warm_total:.2f}", f"{warm_total / bare:.2f}",
                  f"{warm_total / speech_s:.3f}")
    for step in STEPS:
        t = sum(r[1].get(step, 0.0) for r in warm) / len(warm)
        table.add_row(f"  warm: {step}", f"{t:.2f}", f"{t / bare:.2f}", f"{t / speech_s:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
