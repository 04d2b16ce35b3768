"""Release -> personal copies: how fast the copies queue makes N distributors' copies of a ~60 s clip.

Renders one statement of about 60 s of speech, gives N distributors a live
token, releases it (which queues one copy job each: Ogg Opus, M4A and the
vertical MP4, `services.copy_jobs.PREPARED_FORMATS`), makes the clip's
picture once, then runs the copies queue in this process (`JobWorker`, as
`voxgate worker --queues copies` does) until every job is done. Prints:

- where one copy's time goes, stage by stage and per format (median of
  --repeat), each against a baseline measured in the same run: a bare ffmpeg
  encode of the same samples in the same codec (no labels, no credentials, no
  checks); shared stages against the bare encodes of all prepared formats;
- copies per minute per core on this machine, and the projected time for
  --project distributors on --cores cores (target: 1,000 on 16 cores in 10 min);
- what a copy costs in storage.

    .venv/bin/python scripts/bench_copies.py [--distributors 4] [--concurrency 2] [--project 1000 --cores 16]
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.domain import Decision  # noqa: E402
from pipeline.services import review, statements, users, voices  # noqa: E402
from pipeline.services.render import render_statement  # noqa: E402
from pipeline.services.tools import Tools  # noqa: E402
from pipeline.services.workspace import init_workspace, utcnow  # noqa: E402

from bench_render import TEXT  # noqa: E402  (the same ~60 s statement the render benchmark measures)

TARGET_MIN: float = 10.0  # 1,000 distributors' copies within this many minutes on 16 cores (issue 12)


def timed(fn, repeat: int) -> tuple[float, object]:
    """(median seconds, last result) of `repeat` calls."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bare_encode(samples, fmt: str, dest: Path) -> None:
    """The baseline: ffmpeg encoding the same float samples in the same codec, nothing else."""
    from pipeline.export.formats import MP3_BITRATE, OPUS_APPLICATION, OPUS_BITRATE

    codec = {"wav": ["-c:a", "pcm_s24le", "-f", "wav"],
             "mp3": ["-c:a", "libmp3lame", "-b:a", MP3_BITRATE, "-f", "mp3"],
             "ogg": ["-c:a", "libopus", "-b:a", OPUS_BITRATE, "-application", OPUS_APPLICATION, "-f", "ogg"],
             "m4a": ["-c:a", "libopus", "-b:a", OPUS_BITRATE, "-application", OPUS_APPLICATION, "-f", "mp4"]}[fmt]
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", "48000", "-ac", "1", "-i", "pipe:0", *codec,
                    str(dest)], input=samples.astype("<f4").tobytes(), check=True, capture_output=True)


def bare_remux(picture: Path, sound: Path, dest: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(picture), "-i", str(sound), "-map", "0:v:0", "-map",
                    "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-shortest", "-f", "mp4", str(dest)],
                   check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distributors", type=int, default=4, help="distributors whose copies are made (default 4)")
    parser.add_argument("--concurrency", type=int, default=max(1, os.cpu_count() or 1),
                        help="copy jobs at once in the worker (default: this machine's cores)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each stage (median; at least 3)")
    parser.add_argument("--project", type=int, default=1000, help="distributors to project the time for")
    parser.add_argument("--cores", type=int, default=16, help="cores to project for")
    args = parser.parse_args()
    repeat, n, cores_here = max(3, args.repeat), max(1, args.distributors), os.cpu_count() or 1
    console = Console()

    from dataclasses import replace

    from pipeline.domain.serials import delivery_serial
    from pipeline.export.formats import ExportFormat, export_clip, remux_opus_to_m4a
    from pipeline.export.video import VIDEO_MIME, replace_audio
    from pipeline.provenance.credentials import (
        embed_credentials,
        load_identity,
        write_sidecar,
    )
    from pipeline.services.copies import (
        check_marks_in,
        mark_serial,
        payload_mark,
        read_premaster,
        write_premaster,
    )
    from pipeline.services.copy_jobs import PREPARED_DERIVED, PREPARED_FORMATS, copy_job_id, job_states
    from pipeline.services.job_worker import JobWorker
    from pipeline.services.deliveries import COPY_PRESENCE_EXCERPT_S, prepare_copies
    from pipeline.services.video import ensure_derived, release_context
    from pipeline.store.models import ClipRow, DeliveryFileRow

    with tempfile.TemporaryDirectory(prefix="voxgate-bench-") as tmp:
        root = Path(tmp)
        os.environ["VOXGATE_KEYS"] = str(root / "keys")  # people's keys, outside the workspace
        os.environ.setdefault("VOXGATE_PASSPHRASE", "bench passphrase")
        ws, _ = init_workspace(root / "ws", "Free Voice Media (demo)", now=utcnow())
        for name, role in (("ops", "admin"), ("sam", "submitter"), ("rita", "reviewer"), ("ravi", "reviewer"),
                           ("joe-delegate", "delegate"), ("solo", "distributor")):
            users.add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
        distributors = [f"d{i:04d}" for i in range(n)]
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from pipeline.identity.keys import public_key_of
        from pipeline.services.tokens import issue_token

        for name in distributors:  # distributors only download: a public key each, no key folder needed
            users.add_user(ws, name, "distributor", public_key=public_key_of(Ed25519PrivateKey.generate()), actor="ops", now=utcnow())
            issue_token(ws, name, actor="ops", now=utcnow())
        voices.add_voice(ws, REPO / "voices" / "demo", actor="ops", now=utcnow())
        tools = Tools()
        sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                                text=TEXT, actor="sam", now=utcnow()).id
        review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
        review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
        t0 = time.perf_counter()
        clip_id = render_statement(ws, sid, tools, actor="rita", now=utcnow()).clip_id
        render_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())  # the release: N jobs queued
        release_s = time.perf_counter() - t0
        with ws.sessions() as s:
            clip = s.get(ClipRow, clip_id)
            premaster_sha, duration = clip.premaster_sha256, clip.figures["duration_s"]
            strength = clip.figures["payload_strength"]
        t0 = time.perf_counter()
        ensure_derived(ws, clip_id, "mp4-vertical", tools, now=utcnow())  # the picture: once per clip
        picture_s = time.perf_counter() - t0
        for fmt in PREPARED_DERIVED:  # the captions, also queued at release: made here, outside the copies' time
            ensure_derived(ws, clip_id, fmt, tools, now=utcnow())

        # --- one copy, stage by stage, in this process (nothing registered) ------------------------
        context = release_context(ws, clip_id, utcnow())
        presence, mark, identity = tools.presence_mark(), payload_mark(ws), load_identity(ws.c2pa_dir)
        serial = delivery_serial(999_999)
        manifest = replace(context.provenance, payload_serial=serial).manifest()
        settings = context.provenance.settings
        premaster_path = ws.files.open_checked(premaster_sha)
        work = root / "stages"
        work.mkdir()
        rows: list[tuple[str, float, float | None]] = []  # (stage, seconds, baseline seconds)
        decode_s, premaster = timed(lambda: read_premaster(premaster_path), repeat)
        mark_s, (marked, _) = timed(lambda: mark_serial(premaster, serial, presence, mark, read_back=False,
                                                          strength=strength,
                                                          target_lufs=settings["target_lufs"],
                                                          true_peak_dbtp=settings["true_peak_dbtp"]), repeat)
        from pipeline.services.copies import read_marks

        exact_s, _ = timed(lambda: read_marks(marked, 48_000, presence, mark), repeat)
        bare: dict[str, float] = {}
        for fmt in ("ogg", "m4a", "mp3", "wav"):
            ef = ExportFormat(fmt)
            bare[fmt], _ = timed(lambda fmt=fmt: bare_encode(marked, fmt, work / f"bare.{fmt}"), repeat)

            def ours(ef=ef):
                dest = work / f"copy{ef.extension}"
                if ef is ExportFormat.OGG:
                    export_clip(marked, 48_000, ef, dest, context.labels)
                    write_sidecar(dest, ef.mime, manifest, identity)
                elif ef is ExportFormat.M4A:  # a copy's M4A takes the Ogg's Opus packets: no second encode
                    remux_opus_to_m4a(work / "copy.ogg", dest, context.labels,
                                      seal=lambda path, ef: embed_credentials(path, ef.mime, manifest, identity))
                else:
                    export_clip(marked, 48_000, ef, dest, context.labels,
                                seal=lambda path, ef=ef: embed_credentials(path, ef.mime, manifest, identity))
                return dest
            t, _ = timed(ours, repeat)
            rows.append((f"{fmt}: {'Ogg packets remuxed' if fmt == 'm4a' else 'encode'}, label, sign", t, bare[fmt]))
        sound = write_premaster(marked, work / "sound.wav")
        with ws.sessions() as s:
            picture = ws.files.open_checked(next(f.sha256 for f in s.get(ClipRow, clip_id).files
                                                 if f.format == "mp4-vertical"))
        bare["mp4-vertical"], _ = timed(lambda: bare_remux(picture, sound, work / "bare.mp4"), repeat)
        video_s, _ = timed(lambda: replace_audio(
            picture, sound, work / "copy.mp4", shape="mp4-vertical", labels=context.labels,
            seal=lambda path: embed_credentials(path, VIDEO_MIME, manifest, identity)), repeat)
        rows.append(("mp4-vertical: remux picture + AAC, label, sign", video_s, bare["mp4-vertical"]))
        check_ogg_s, _ = timed(lambda: check_marks_in(work / "copy.ogg", serial, presence, mark, "ogg",
                                                      COPY_PRESENCE_EXCERPT_S), repeat)
        check_mp4_s, _ = timed(lambda: check_marks_in(work / "copy.mp4", serial, None, mark, "mp4"), repeat)
        prepared_bare = sum(bare[f] for f in PREPARED_FORMATS)

        # --- one whole copy through prepare_copies (parallel encodes, checks, registration) --------
        t0 = time.perf_counter()
        prepare_copies(ws, clip_id, "solo", PREPARED_FORMATS, now=utcnow(), tools=tools)
        one_copy_s = time.perf_counter() - t0

        # --- the queue: N jobs queued at release, made by a worker in this process -----------------
        ids = [copy_job_id(clip_id, name, PREPARED_FORMATS) for name in distributors]
        queued = len(job_states(ws, ids))
        t0 = time.perf_counter()
        with JobWorker(ws, tools, queues=("copies",), concurrency=args.concurrency, poll_s=0.2):
            while True:
                states = [j.status for j in job_states(ws, ids)]
                if all(st in ("SUCCESS", "ERROR", "CANCELLED") for st in states) and len(states) == n:
                    break
                time.sleep(0.2)
        queue_s = time.perf_counter() - t0
        failed = [j for j in job_states(ws, ids) if j.status != "SUCCESS" or (j.output or {}).get("refused")]
        with ws.sessions() as s:
            sizes: dict[str, list[int]] = {}
            for f in s.query(DeliveryFileRow):
                sizes.setdefault(f.format, []).append(f.size)
        load = os.getloadavg()

    table = Table(title=f"One personal copy of a {duration:.1f} s clip, stage by stage (median of {repeat}); "
                        f"{cores_here} cores, load {load[0]:.1f}")
    for col in ("stage", "seconds", "baseline s", "× baseline"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    shared = [("decode the premaster (once)", decode_s),
              ("mark: payload embed at the render's strength, final loudness pass, true-peak gate", mark_s),
              ("(not done for a copy) both marks read from the exact samples", exact_s),
              ("check the Ogg: serial (whole), presence (10 s)", check_ogg_s),
              ("check the serial in the video's audio", check_mp4_s)]
    for name, t in shared:
        table.add_row(name, f"{t:.2f}", f"{prepared_bare:.2f}", f"{t / prepared_bare:.2f}")
    for name, t, b in rows:
        table.add_row(name, f"{t:.2f}", f"{b:.2f}", f"{t / b:.2f}")
    table.add_row("one whole copy (ogg + m4a + mp4-vertical, parallel), registered", f"{one_copy_s:.2f}",
                  f"{prepared_bare:.2f}", f"{one_copy_s / prepared_bare:.2f}")
    console.print(table)
    console.print("baseline: bare ffmpeg of the same samples in the same codec (per format row); shared rows and the "
                  f"whole copy against the bare encodes of {', '.join(PREPARED_FORMATS)} together "
                  f"({prepared_bare:.2f} s)")

    per_min = n / (queue_s / 60)
    per_core = per_min / cores_here
    projected = args.project / (per_core * args.cores) + picture_s / 60
    verdict = "meets" if projected <= TARGET_MIN else "misses"
    summary = Table(title="Release -> copies")
    summary.add_column("what")
    summary.add_column("figure", justify="right")
    summary.add_row("render of the clip (for reference)", f"{render_s:.1f} s")
    summary.add_row(f"release, queueing {queued} copy jobs and {len(PREPARED_DERIVED)} of the clip's video and captions",
                    f"{release_s:.2f} s")
    summary.add_row("the clip's vertical picture (once per clip)", f"{picture_s:.1f} s")
    summary.add_row(f"queue: {n} copies, {args.concurrency} at once", f"{queue_s:.1f} s"
                    + (f" ({len(failed)} failed)" if failed else ""))
    summary.add_row("copies per minute (this machine)", f"{per_min:.1f}")
    summary.add_row(f"copies per minute per core ({cores_here} cores)", f"{per_core:.2f}")
    summary.add_row(f"projected: {args.project} distributors on {args.cores} cores", f"{projected:.1f} min")
    for fmt in sorted(sizes):
        summary.add_row(f"storage: {fmt}", f"{statistics.median(sizes[fmt]) / 1024:.0f} KiB")
    per_copy = sum(statistics.median(sizes[f]) for f in sizes if f in (*PREPARED_FORMATS, "ogg.c2pa"))
    summary.add_row("storage: one prepared copy", f"{per_copy / 1024:.0f} KiB")
    summary.add_row(f"storage: {args.project} prepared copies", f"{per_copy * args.project / 2**30:.2f} GiB")
    console.print(summary)
    console.print(f"projected {args.project} copies on {args.cores} cores: {projected:.1f} min ({verdict} the target "
                  f"of {TARGET_MIN:.0f} min; assumes copies scale with cores, as the queue's jobs are independent)")


if __name__ == "__main__":
    main()
