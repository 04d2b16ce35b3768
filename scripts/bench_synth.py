"""Synthesis speed: the Piper voice and a full-size Coqui VITS, one sentence at a time against batched.

Real-time factor (RTF) is compute seconds per second of audio; lower is
faster. Every figure comes from the same run on the same machine, and the
ratios between them are what to compare across machines:

    .venv/bin/python scripts/bench_synth.py [--repeat N] [--device cpu|cuda] [--json PATH] [--xtts]

The Coqui VITS has the standard VitsConfig sizes (36 M generator
parameters) with random weights: a forward pass costs the same as a
trained model's for the same output length. Random weights give each token
one frame, so the model's length_scale is set to make its speech as long as
Piper's for the same text, which keeps the decoder's work realistic. It
reads characters; a model trained on phonemes adds espeak-ng's time
(a few ms a sentence).

--xtts adds the autoregressive GPT decoding speed of an XTTS-v2-size
model (30 layers, 1024 wide, random weights) in audio tokens a second;
XTTS-v2 needs about 21.5 tokens for a second of speech. Meant for a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

SENTENCES = [
    "I am writing to you from a place where I cannot speak for myself, so my friends speak for me.",
    "The charges against me are false, and every document my lawyers have filed shows it.",
    "For eleven months the hearings have been closed to the public and to the press.",
    "I ask only for what the constitution promises every citizen: an open trial before an independent judge.",
    "To my family, thank you for your patience and your courage.",
    "To the journalists who keep asking questions, please do not stop.",
    "We will not answer anger with anger.",
    "We will answer it with facts, with patience, and with the law.",
    "When this is over, I hope to thank each of you in my own voice.",
    "Until then, this message is read by a synthetic voice made with my consent, and labelled as such.",
    "Please share it only as it is, with its label, and check it before you believe any other.",
    "If a recording asks you for money or for violence, it is not from me.",
]

XTTS_TOKENS_PER_SECOND = 22050 / 1024
"""XTTS-v2's GPT emits one audio token per 1024 samples at 22.05 kHz."""


def timed(runs: Sequence[Callable[[], Sequence[Any]]], repeat: int) -> list[tuple[float, Sequence[Any]]]:
    """For each run, the median wall time of `repeat` timings after a warm-up, and its last result.

    The runs take turns, so a change in the machine's load (a shared
    machine's neighbours) weighs on each of them alike.
    """
    results = [run() for run in runs]
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for number, run in enumerate(runs):
            start = time.perf_counter()
            results[number] = run()
            times[number].append(time.perf_counter() - start)
    return [(statistics.median(t), r) for t, r in zip(times, results, strict=True)]


def audio_seconds(arrays: Sequence[Any], rate: int) -> float:
    return sum(len(a) for a in arrays) / rate


def bench_piper(repeat: int) -> dict[str, float] | None:
    try:
        from pipeline.synth import PiperEngine, packaged_voice

        engine = PiperEngine(*packaged_voice())
        engine.load()
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not run and carries on
        print(f"Piper skipped: {exc}", file=sys.stderr)
        return None
    ((seconds, arrays),) = timed([lambda: engine.synthesize(SENTENCES)], repeat)
    audio = audio_seconds(arrays, engine.sample_rate)
    return {"audio_s": audio, "compute_s": seconds, "rtf": seconds / audio}


def full_size_vits(folder: Path) -> tuple[Path, Path]:
    """The standard VitsConfig with random weights, saved as a slim checkpoint."""
    import torch
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    from pipeline.train.checkpoint import slim_vits

    torch.manual_seed(0)
    config = VitsConfig(model_args=VitsArgs(init_discriminator=False), use_phonemes=False,
                        text_cleaner="basic_cleaners")  # english_cleaners imports inflect, absent on GPU images
    model = Vits(config)
    path = slim_vits(model.state_dict(), config.to_dict(), folder, step=0, epoch=0, voxgate={"bench": "random"})
    return path, folder / "config.json"


def bench_vits(device: str, repeat: int, target_audio_s: float | None) -> dict[str, Any]:
    import torch

    from pipeline.synth import CoquiEngine

    with tempfile.TemporaryDirectory() as tmp:
        model, config = full_size_vits(Path(tmp))
        probe = CoquiEngine(model, config, device=device)
        probe.load()
        length_scale = 1.0
        if target_audio_s:
            natural = audio_seconds(probe.synthesize(SENTENCES), probe.sample_rate)
            length_scale = target_audio_s / natural
        engine = CoquiEngine(model, config, device=device, length_scale=length_scale)
        engine.load()
    sync = torch.cuda.synchronize if engine.device == "cuda" else (lambda: None)

    def one_by_one() -> list[Any]:
        arrays = [engine.synthesize([s])[0] for s in SENTENCES]
        sync()
        return arrays

    def batched() -> list[Any]:
        arrays = engine.synthesize(SENTENCES)
        sync()
        return arrays

    (single_s, arrays), (batch_s, _) = timed([one_by_one, batched], repeat)
    audio = audio_seconds(arrays, engine.sample_rate)
    return {"device": engine.device, "batch_size": engine.batch_size, "length_scale": round(length_scale, 3),
            "audio_s": audio, "one_by_one_s": single_s, "batched_s": batch_s,
            "rtf_one_by_one": single_s / audio, "rtf_batched": batch_s / audio, "batched_speedup": single_s / batch_s}


def bench_xtts_gpt(device: str, tokens: int = 256) -> dict[str, float]:
    """Greedy decoding with a KV cache through a GPT-2 of XTTS-v2's size (its GPT is a GPT-2)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=1026, n_positions=4096, n_embd=1024, n_layer=30, n_head=16)
    model = GPT2LMHeadModel(config).to(device).eval()
    prompt = torch.randint(0, 1024, (1, 64), device=device)
    with torch.inference_mode():
        model.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=0)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=0)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    per_second = tokens / seconds
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": per_second,
            "gpt_rtf": XTTS_TOKENS_PER_SECOND / per_second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after a warm-up (median; default 3)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when present")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--xtts", action="store_true", help="also time XTTS-v2-size GPT decoding")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    console = Console()
    figures: dict[str, Any] = {"device": device, "cpus": os.cpu_count(), "sentences": len(SENTENCES),
                               "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
    figures["piper"] = piper = bench_piper(args.repeat)
    figures["vits"] = vits = bench_vits(device, args.repeat, piper["audio_s"] if piper else None)
    if args.xtts:
        figures["xtts_gpt"] = bench_xtts_gpt(device)

    table = Table(title=f"Synthesis speed on {figures['gpu'] or f'{os.cpu_count()} CPU cores'}", title_justify="left")
    for column in ("engine", "mode", "audio", "compute", "RTF", "× real time"):
        table.add_column(column, justify="left" if column in ("engine", "mode") else "right")

    def row(engine: str, mode: str, audio: float, seconds: float) -> None:
        table.add_row(engine, mode, f"{audio:.1f} s", f"{seconds:.2f} s", f"{seconds / audio:.4f}",
                      f"{audio / seconds:.1f}")

    if piper:
        row("piper (onnxruntime, cpu)", "one by one", piper["audio_s"], piper["compute_s"])
    row(f"coqui vits full size ({vits['device']})", "one by one", vits["audio_s"], vits["one_by_one_s"])
    row(f"coqui vits full size ({vits['device']})", f"batched ×{vits['batch_size']}", vits["audio_s"],
        vits["batched_s"])
    console.print(table)
    console.print(f"batched / one by one: {vits['batched_speedup']:.2f}× faster")
    if piper:
        console.print(f"coqui vits batched vs piper: {piper['rtf'] / vits['rtf_batched']:.2f}× Piper's speed")
    if "xtts_gpt" in figures:
        x = figures["xtts_gpt"]
        console.print(f"XTTS-v2-size GPT decoding: {x['tokens_per_s']:.0f} tokens/s, "
                      f"GPT RTF {x['gpt_rtf']:.3f} (one stream, greedy, KV cache)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
