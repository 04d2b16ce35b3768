"""Calibrate the enrollment checks: speaker similarity (same voice vs different voices) and, with --asr, the recogniser.

    .venv/bin/python scripts/calibrate_speaker.py [--pairs 24] [--asr 12]

Speaker similarity is the cosine of resemblyzer embeddings, computed exactly
as `voxgate voice enroll` computes it (pipeline.consent.checks):

* "consent vs recordings": a consent reading against the mean embedding of ten
  training sentences (the `speaker similarity` check);
* "consent vs one recording": a consent reading against a single training
  sentence (the `least similar recording` check).

Same voice: the packaged Piper voice (joe) reading different consent scripts,
as recorded under different conditions (clean, slower, faster, 20 dB noise,
16 kHz, MP3 64 kbit/s). Different voices: espeak-ng voices, and joe shifted
by 3 to 6 semitones (librosa), which moves the pitch and the formants as a
different vocal tract would. Different espeak-ng voices score as near-identical
to each other on resemblyzer (0.97), so they are only compared with joe here.

With --asr N: N consent scripts with random challenges, read by joe with
sentence pauses, recognised by Whisper tiny.en as enrollment does; prints the
word error rate and how often each required element was heard.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.consent.checks import (  # noqa: E402
    DEFAULT_MAX_WER,
    DEFAULT_MIN_RECORDING_SIMILARITY,
    DEFAULT_MIN_SPEAKER_SIMILARITY,
    CheckConfig,
    SpeakerEncoder,
    cosine,
    speech_checks,
    transcribe,
)
from pipeline.consent.script import challenge_phrase, consent_script, required_names  # noqa: E402
from pipeline.domain import ApprovalPolicyKind, Consent, Scope  # noqa: E402
from pipeline.synth import PiperEngine, packaged_voice, split_sentences  # noqa: E402

TRAINING = [
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
]
OWNERS = [("Joe Example", "Free Voice Media"), ("Maria Lopez", "Open Courts Network"),
          ("Daniel Okafor", "Justice Media Team"), ("Sarah Mitchell", "Civic Voices Trust")]
ESPEAK_VOICES = ["en-us", "en-gb", "en+f2", "en+f3", "en+f4", "en+m3", "en+m5", "en+klatt", "en-gb-scotland",
                 "en-029", "en-us-nyc", "en-gb-x-rp", "en+Storm", "en+grandma", "en+michel", "en+john"]
SEMITONES = [-6, -5, -4, -3, 3, 4, 5, 6]
CONDITIONS = ["clean", "slower", "faster", "noise 20 dB", "16 kHz", "mp3 64k"]
PAUSE_S = 0.35


def terms(i: int, rng: random.Random) -> tuple[Consent, tuple[str, ...]]:
    owner, org = OWNERS[i % len(OWNERS)]
    policy = ApprovalPolicyKind.PER_STATEMENT if i % 2 else ApprovalPolicyKind.BLANKET
    until = datetime(2027, 1, 1, 23, 59, tzinfo=timezone.utc) + timedelta(days=rng.randrange(0, 1500))
    c = Consent(voice_id="v", owner=owner, organisation=org,
                scope=Scope(frozenset({"public-statement", "press-release"}), frozenset({"social", "messaging"}),
                            frozenset({"en"})),
                valid_from=datetime(2026, 1, 1, tzinfo=timezone.utc), valid_until=until, policy=policy,
                approvers=frozenset({"joe-delegate"}) if policy is ApprovalPolicyKind.PER_STATEMENT else frozenset())
    return c, challenge_phrase(rng)


def read(engine: PiperEngine, text: str) -> np.ndarray:
    """Sentences with short pauses, as a person reads."""
    gap = np.zeros(int(PAUSE_S * engine.sample_rate), np.float32)
    return np.concatenate([x for s in engine.synthesize(split_sentences(text, "en")) for x in (s, gap)])


def espeak(voice: str, text: str) -> tuple[np.ndarray, int]:
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    x, sr = sf.read(io.BytesIO(out), dtype="float32")
    return x, sr


def condition(x: np.ndarray, sr: int, how: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    if how == "noise 20 dB":
        noise = rng.standard_normal(x.size).astype(np.float32)
        return x + noise * np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2) / 100), sr
    if how == "16 kHz":
        import librosa

        return librosa.resample(x, orig_sr=sr, target_sr=16_000), 16_000
    if how == "mp3 64k":
        with tempfile.TemporaryDirectory() as tmp:
            src, mp3 = Path(tmp) / "a.wav", Path(tmp) / "a.mp3"
            sf.write(src, x, sr)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-b:a", "64k", str(mp3)], check=True)
            from pipeline.export.probe import decode

            return decode(mp3, sr)
    return x, sr


def stats(values: list[float]) -> str:
    v = np.array(values)
    return f"{v.min():.3f} / {v.mean():.3f} / {v.max():.3f}"


def speaker(pairs: int, console: Console) -> None:
    rng, nrng = random.Random(7), np.random.default_rng(7)
    joe = PiperEngine(*packaged_voice())
    slow, fast = PiperEngine(*packaged_voice(), length_scale=1.15), PiperEngine(*packaged_voice(), length_scale=0.87)
    for e in (joe, slow, fast):
        e.load()
    enc = SpeakerEncoder().load()
    sr = joe.sample_rate
    t0 = time.perf_counter()
    train = [enc.embed(x, sr) for x in joe.synthesize(TRAINING)]
    mean = np.mean(train, axis=0)
    console.print(f"10 training embeddings in {time.perf_counter() - t0:.1f} s (first call included)")

    same, same_one, diff, diff_one, labels = [], [], [], [], []
    for i in range(pairs):
        c, words = terms(i, rng)
        text = consent_script(c, words)
        how = CONDITIONS[i % len(CONDITIONS)]
        engine = slow if how == "slower" else fast if how == "faster" else joe
        x, rate = condition(read(engine, text), sr, how, nrng)
        e = enc.embed(x, rate)
        same.append(cosine(e, mean))
        same_one.extend(cosine(e, t) for t in train[i % 5: i % 5 + 2])
        # A stranger reads the same script.
        if i % 2 == 0:
            voice = ESPEAK_VOICES[(i // 2) % len(ESPEAK_VOICES)]
            y, yr = espeak(voice, text)
            label = f"espeak-ng {voice}"
        else:
            import librosa

            steps = SEMITONES[(i // 2) % len(SEMITONES)]
            y, yr = librosa.effects.pitch_shift(read(joe, text), sr=sr, n_steps=steps), sr
            label = f"joe {steps:+d} semitones"
        d = enc.embed(y, yr)
        diff.append(cosine(d, mean))
        labels.append(label)
        # One stranger's sentence slipped into the training set, against joe's consent reading.
        stranger = (espeak(ESPEAK_VOICES[i % len(ESPEAK_VOICES)], TRAINING[i % 10]) if i % 2 == 0 else
                    (__import__("librosa").effects.pitch_shift(joe.synthesize([TRAINING[i % 10]])[0], sr=sr,
                                                                n_steps=SEMITONES[i % len(SEMITONES)]), sr))
        diff_one.append(cosine(e, enc.embed(*stranger)))

    table = Table(title="Speaker similarity (cosine, resemblyzer)", title_justify="left")
    for col in ("comparison", "pairs", "min / mean / max", "threshold", "wrong side"):
        table.add_column(col)
    t, r = DEFAULT_MIN_SPEAKER_SIMILARITY, DEFAULT_MIN_RECORDING_SIMILARITY
    table.add_row("same voice: consent vs recordings", str(len(same)), stats(same), f">= {t}",
                  str(sum(v < t for v in same)))
    table.add_row("different: consent vs recordings", str(len(diff)), stats(diff), f"< {t}",
                  str(sum(v >= t for v in diff)))
    table.add_row("same voice: consent vs one recording", str(len(same_one)), stats(same_one), f">= {r}",
                  str(sum(v < r for v in same_one)))
    table.add_row("different: consent vs one recording", str(len(diff_one)), stats(diff_one), f"< {r}",
                  str(sum(v >= r for v in diff_one)))
    console.print(table)
    console.print(f"gap (consent vs recordings): lowest same {min(same):.3f}, highest different {max(diff):.3f} "
                  f"({labels[int(np.argmax(diff))]})")
    by_cond = {h: [v for j, v in enumerate(same) if CONDITIONS[j % len(CONDITIONS)] == h] for h in CONDITIONS}
    console.print("same voice by condition: " + "; ".join(f"{h} {min(v):.3f}–{max(v):.3f}" for h, v in by_cond.items()))
    kinds = {"espeak-ng": [v for v, lab in zip(diff, labels) if lab.startswith("espeak")],
             "joe shifted": [v for v, lab in zip(diff, labels) if lab.startswith("joe")]}
    console.print("different by kind: " + "; ".join(f"{k} {min(v):.3f}–{max(v):.3f}" for k, v in kinds.items()))


def asr(n: int, console: Console) -> None:
    from pipeline.quality.asr import Transcriber

    rng = random.Random(11)
    joe = PiperEngine(*packaged_voice())
    joe.load()
    tr = Transcriber().load()
    cfg = CheckConfig()
    wers, seconds, audio_s, failed = [], [], [], {}
    for i in range(n):
        c, words = terms(i, rng)
        text = consent_script(c, words)
        x = read(joe, text)
        t0 = time.perf_counter()
        heard = transcribe(tr, x, joe.sample_rate)
        seconds.append(time.perf_counter() - t0)
        audio_s.append(x.size / joe.sample_rate)
        h = speech_checks(text, heard, names=required_names(c), organisation=c.organisation,
                          until=c.valid_until.date(), challenge=words, cfg=cfg)
        wers.append(h.wer)
        for check in h.checks:
            if not check.passed:
                failed.setdefault(check.name.split("'")[0].strip(), []).append(f"{check.detail} | heard: {heard}")
    console.print(f"Whisper tiny.en on {n} consent scripts read by joe ({np.mean(audio_s):.1f} s each, "
                  f"recognised in {np.mean(seconds):.1f} s each): WER min / mean / max {stats(wers)}; "
                  f"over {DEFAULT_MAX_WER}: {sum(w > DEFAULT_MAX_WER for w in wers)}")
    for name, why in failed.items():
        console.print(f"  {name}: failed {len(why)}/{n}: {why[0]}")
    if not failed:
        console.print("  every name, organisation, end date and challenge phrase was heard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=24, help="same-voice and different-voice pairs (each)")
    parser.add_argument("--asr", type=int, default=0, help="also recognise this many consent scripts")
    args = parser.parse_args()
    console = Console()
    if args.pairs:
        speaker(args.pairs, console)
    if args.asr:
        asr(args.asr, console)


if __name__ == "__main__":
    main()
