"""Synthesis speed: the Piper voice and a full-size Coqui VITS, one sentence at a time against batched.

Real-time factor (RTF) is compute seconds per second of audio; lower is
faster. Every figure comes from the same run on the same machine, the VITS
variants taking turns, and the ratios between them are what to compare
across machines:

    .venv/bin/python scripts/bench_synth.py [--repeat N] [--device cpu|cuda] [--json PATH] [--no-onnx] [--xtts]

The Coqui VITS has the standard VitsConfig sizes (36 M generator
parameters) with random weights: a forward pass costs the same as a
trained model's for the same output length. Random weights give each token
about one frame, so the model's length_scale is set to make its speech as
long as Piper's for the same text, as near as whole frames a token allow
(see `length_scale_for`), which keeps the decoder's work realistic. It
reads characters; a model trained on phonemes adds espeak-ng's time
(a few ms a sentence).

The ONNX rows run Coqui's own export of the same model (`Vits.export_onnx`)
on onnxruntime's CPU provider, one sentence at a time and in the engine's
batches; they need the `onnx` package for the export and are skipped
without it (or with --no-onnx). The graph draws its noise with
onnxruntime's own unseeded generator, so every VITS row runs with the
duration noise at zero: each sentence gets the same frames in every row.
The engine has no ONNX runtime; see the report of the last measurement in
pipeline/synth/coqui.py.

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
import warnings
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


def bench_vits(device: str, repeat: int, target_audio_s: float | None, onnx: bool) -> dict[str, Any]:
    """Coqui VITS through the engine one by one and batched, and, with `onnx`, Coqui's ONNX export likewise."""
    import torch

    from pipeline.synth import CoquiEngine

    with tempfile.TemporaryDirectory() as tmp:
        model, config = full_size_vits(Path(tmp))
        length_scale = length_scale_for(load_vits(model, config), target_audio_s) if target_audio_s else 1.0
        engine = CoquiEngine(model, config, device=device, length_scale=length_scale, noise_scale_dp=0.0)
        engine.load()
        exported = onnx_vits(model, config, length_scale, Path(tmp), engine.batch_size) if onnx else None
    sync = torch.cuda.synchronize if engine.device == "cuda" else (lambda: None)

    def one_by_one() -> list[Any]:
        arrays = [engine.synthesize([s])[0] for s in SENTENCES]
        sync()
        return arrays

    def batched() -> list[Any]:
        arrays = engine.synthesize(SENTENCES)
        sync()
        return arrays

    runs = [one_by_one, batched, *(exported or ())]
    (single_s, arrays), (batch_s, _), *onnx_timed = timed(runs, repeat)
    audio = audio_seconds(arrays, engine.sample_rate)
    figures: dict[str, Any] = {
        "device": engine.device, "batch_size": engine.batch_size, "length_scale": round(length_scale, 3),
        "audio_s": audio, "one_by_one_s": single_s, "batched_s": batch_s, "rtf_one_by_one": single_s / audio,
        "rtf_batched": batch_s / audio, "batched_speedup": single_s / batch_s, "onnx": None,
    }
    if onnx_timed:
        (onnx_single_s, onnx_arrays), (onnx_batch_s, _) = onnx_timed
        onnx_audio = audio_seconds(onnx_arrays, engine.sample_rate)
        figures["onnx"] = {"audio_s": onnx_audio, "one_by_one_s": onnx_single_s, "batched_s": onnx_batch_s,
                           "rtf_one_by_one": onnx_single_s / onnx_audio, "rtf_batched": onnx_batch_s / onnx_audio,
                           "batched_speedup": onnx_single_s / onnx_batch_s}
    return figures


def load_vits(model: Path, config: Path) -> Any:
    """The saved VITS as Coqui builds it, on the CPU, in eval mode."""
    import torch
    from TTS.config import load_config
    from TTS.tts.models import setup_model

    vits = setup_model(load_config(str(config)))
    vits.load_state_dict(torch.load(model, map_location="cpu", weights_only=True)["model"], strict=True)
    return vits.eval()


def length_scale_for(vits: Any, target_audio_s: float) -> float:
    """The length_scale at which the VITS, its duration noise at zero, speaks SENTENCES closest to `target_audio_s`.

    `Vits.inference` rounds each token's duration times the scale up to whole frames, so the length is a
    step function of the scale; with random weights every token lasts about as long, so the steps are
    one frame a token (21 s for these sentences). Bisection on the durations, without running the decoder,
    finds the step nearest the target and returns the middle of its span of scales.
    """
    import torch

    durations = []
    with torch.inference_mode():
        for sentence in SENTENCES:
            ids = torch.tensor([vits.tokenizer.text_to_ids(sentence)])
            x, _, _, x_mask = vits.text_encoder(ids, torch.tensor([ids.shape[1]]))
            logw = vits.duration_predictor(x, x_mask, reverse=True, noise_scale=0.0)
            durations.append((torch.exp(logw) * x_mask).flatten())
    frames = torch.cat(durations)
    seconds_per_frame = vits.config.audio.hop_length / vits.config.audio.sample_rate

    def seconds(scale: float) -> float:
        return float(torch.ceil(frames * scale).sum()) * seconds_per_frame

    def step_at(goal: float) -> tuple[float, float]:
        """The scales either side of where the length first reaches `goal` seconds."""
        low, high = 0.01, 100.0
        for _ in range(50):
            middle = (low + high) / 2
            low, high = (middle, high) if seconds(middle) < goal else (low, middle)
        return low, high

    low, high = step_at(target_audio_s)
    short, long = seconds(low), seconds(high)
    if target_audio_s - short < long - target_audio_s:
        start, end = step_at(short)[1], high
    else:
        start, end = high, step_at(long + seconds_per_frame / 2)[1]
    return (start + end) / 2  # the middle of the step: no token sits on a rounding edge


def onnx_vits(model: Path, config: Path, length_scale: float, folder: Path,
              batch_size: int) -> tuple[Callable[[], list[Any]], Callable[[], list[Any]]] | None:
    """One-by-one and batched runs of Coqui's ONNX export of the model on onnxruntime's CPU provider.

    None, with the reason on stderr, where the export cannot run (it needs the `onnx` package). The
    duration noise is zero, as in the engine's rows. The batched run pads each of the engine's CPU
    batches and trims each row to its one-by-one length.
    """
    import numpy as np

    from pipeline.synth.coqui import MIN_BATCH_FILL, _batches

    try:
        import onnx  # noqa: F401 - torch's exporter needs it

        vits = load_vits(model, config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings about Python branches on shapes
            vits.export_onnx(output_path=str(folder / "vits.onnx"), verbose=False)
        vits.load_onnx(str(folder / "vits.onnx"))
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not run and carries on
        print(f"ONNX skipped: {exc}", file=sys.stderr)
        return None
    scales = np.array([vits.inference_noise_scale, length_scale, 0.0], np.float32)
    ids = [vits.tokenizer.text_to_ids(s) for s in SENTENCES]
    lengths: list[int] = []

    def run(rows: list[int]) -> Any:
        x = np.zeros((len(rows), max(len(ids[i]) for i in rows)), np.int64)
        for row, i in enumerate(rows):
            x[row, : len(ids[i])] = ids[i]
        feed = {"input": x, "input_lengths": np.array([len(ids[i]) for i in rows], np.int64), "scales": scales}
        return vits.onnx_sess.run(["output"], feed)[0][:, 0]

    def one_by_one() -> list[Any]:
        arrays = [run([i])[0] for i in range(len(ids))]
        lengths[:] = [len(a) for a in arrays]
        return arrays

    def batched() -> list[Any]:
        arrays: list[Any] = [None] * len(ids)
        for batch in _batches(ids, batch_size, MIN_BATCH_FILL["cpu"]):
            for row, wav in zip(batch, run(batch), strict=True):
                arrays[row] = wav[: lengths[row]] if lengths else wav
        return arrays

    return one_by_one, batched


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
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX rows (Coqui's export on onnxruntime)")
    parser.add_argument("--xtts", action="store_true", help="also time XTTS-v2-size GPT decoding")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    console = Console()
    figures: dict[str, Any] = {"device": device, "cpus": os.cpu_count(), "sentences": len(SENTENCES),
                               "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
    figures["piper"] = piper = bench_piper(args.repeat)
    figures["vits"] = vits = bench_vits(device, args.repeat, piper["audio_s"] if piper else None,
                                        onnx=not args.no_onnx)
    figures["ratios"] = ratios(piper, vits)
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
    batches = f"batched ×{vits['batch_size']}"
    row(f"coqui vits full size ({vits['device']})", "one by one", vits["audio_s"], vits["one_by_one_s"])
    row(f"coqui vits full size ({vits['device']})", batches, vits["audio_s"], vits["batched_s"])
    if vits["onnx"]:
        onnx = vits["onnx"]
        row("coqui vits full size (onnxruntime, cpu)", "one by one", onnx["audio_s"], onnx["one_by_one_s"])
        row("coqui vits full size (onnxruntime, cpu)", batches, onnx["audio_s"], onnx["batched_s"])
    console.print(table)
    for label, value in ratios_shown(figures["ratios"]):
        console.print(f"{label}: {value:.2f}×")
    if "xtts_gpt" in figures:
        x = figures["xtts_gpt"]
        console.print(f"XTTS-v2-size GPT decoding: {x['tokens_per_s']:.0f} tokens/s, "
                      f"GPT RTF {x['gpt_rtf']:.3f} (one stream, greedy, KV cache)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


RATIO_LABELS = {
    "vits_batched_vs_one_by_one": "coqui vits batched / one by one (speed)",
    "onnx_batched_vs_one_by_one": "onnx batched / onnx one by one (speed)",
    "onnx_vs_torch_one_by_one": "onnx / torch one by one (speed)",
    "onnx_vs_torch_batched": "onnx / torch batched (speed)",
    "vits_batched_vs_piper": "coqui vits batched / piper (speed per audio second)",
}


def ratios(piper: dict[str, float] | None, vits: dict[str, Any]) -> dict[str, float]:
    """Speed ratios between rows of the same run; above 1 the first named is faster."""
    found = {"vits_batched_vs_one_by_one": vits["batched_speedup"]}
    if vits["onnx"]:
        onnx = vits["onnx"]
        found["onnx_batched_vs_one_by_one"] = onnx["batched_speedup"]
        found["onnx_vs_torch_one_by_one"] = vits["rtf_one_by_one"] / onnx["rtf_one_by_one"]
        found["onnx_vs_torch_batched"] = vits["rtf_batched"] / onnx["rtf_batched"]
    if piper:
        found["vits_batched_vs_piper"] = piper["rtf"] / vits["rtf_batched"]
    return found


def ratios_shown(found: dict[str, float]) -> list[tuple[str, float]]:
    return [(RATIO_LABELS[key], value) for key, value in found.items()]


if __name__ == "__main__":
    main()
