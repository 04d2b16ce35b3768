"""Video export speed: a clip of about 60 s rendered as MP4 in each shape.

The target is under 20 s of wall time per 60 s clip on a two-core machine.
Prints, per shape, the wall time, its ratio to the clip's duration, the CPU
time ffmpeg used (a steadier figure when other work shares the machine) and
the file size; the load average is printed first, since a busy machine
stretches wall times. A distributor's own copy reuses the clip's picture and
takes their marked sound (`replace_audio`): its row is that remux.

    .venv/bin/python scripts/bench_video.py [--repeat N] [--shapes square,vertical]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.audio.loudness import normalise  # noqa: E402
from pipeline.audio.mix import join_with_timeline, resample  # noqa: E402
from pipeline.export.captions import build_captions  # noqa: E402
from pipeline.export.video import VideoShape, render_video, replace_audio  # noqa: E402
from pipeline.provenance.labels import ClipLabels  # noqa: E402
from pipeline.synth import PiperEngine, packaged_voice  # noqa: E402
from pipeline.synth.text import normalise_for_speech, split_sentences  # noqa: E402

MASTER_RATE = 48_000
from bench_render import TEXT  # noqa: E402 - the same ~60 s statement as the render benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="renders per shape to average (default 1)")
    parser.add_argument("--shapes", default="square,vertical", help="comma-separated: square,vertical,landscape")
    args = parser.parse_args()
    shapes = [VideoShape.from_format(name.strip()) for name in args.shapes.split(",")]
    console = Console()

    engine = PiperEngine(*packaged_voice())
    engine.load()
    sentences = split_sentences(TEXT, "en")
    rate = engine.sample_rate
    joined, spans = join_with_timeline(engine.synthesize([normalise_for_speech(s, "en") for s in sentences]), rate)
    timeline = [{"start": a, "end": b, "text": t} for t, span in zip(sentences, spans) if span for a, b in [span]]
    audio = normalise(resample(joined, rate, MASTER_RATE), MASTER_RATE)
    duration = len(audio) / MASTER_RATE
    captions = build_captions(timeline, lang="en")
    labels = ClipLabels(
        clip_id="bench", statement_id=1, voice_id="demo", voice_name="Joe Example (demo voice)",
        organisation="Free Voice Media (demo)", language="en", ai_notice="AI-generated voice.",
        created_at="2026-01-01T00:00:00+00:00",
    )

    console.print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    table = Table(title=f"MP4 export of a {duration:.1f} s clip ({len(captions)} captions)")
    for column in ("shape", "wall s", "× clip duration", "ffmpeg CPU s", "MB"):
        table.add_column(column, justify="left" if column == "shape" else "right")
    with tempfile.TemporaryDirectory(prefix="voxgate-bench-video-") as tmp:
        wav, theirs = Path(tmp) / "clip.wav", Path(tmp) / "recipient.wav"
        sf.write(wav, audio, MASTER_RATE, subtype="PCM_16")
        sf.write(theirs, audio * 0.98, MASTER_RATE, subtype="PCM_16")  # another sound of the same length
        for shape in shapes:
            dest = Path(tmp) / f"clip-{shape.value}.mp4"
            copy = Path(tmp) / f"copy-{shape.value}.mp4"
            runs = {shape.export_format: lambda: render_video(wav, dest, shape=shape, labels=labels, captions=captions),
                    "  recipient's copy (remux)": lambda: replace_audio(dest, theirs, copy, shape=shape, labels=labels)}
            for name, run in runs.items():
                walls, cpus = [], []
                for _ in range(args.repeat):
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    start = time.perf_counter()
                    out = run()
                    walls.append(time.perf_counter() - start)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                wall, cpu = sum(walls) / len(walls), sum(cpus) / len(cpus)
                table.add_row(name, f"{wall:.2f}", f"{wall / duration:.3f}", f"{cpu:.2f}",
                              f"{out.stat().st_size / 1e6:.1f}")
    console.print(table)
    console.print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
