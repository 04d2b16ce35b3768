"""Fine-tuning XTTS-v2's GPT on a voice's clips as Coqui's recipe does, and baking in the voice's speaker conditioning.

The base is a local XTTS-v2 folder as published on the Hugging Face hub
(coqui/XTTS-v2): model.pth, config.json, vocab.json, dvae.pth and
mel_stats.pth. Its weights are under the Coqui Public Model License
(non-commercial) and cannot be fetched from this machine, so this path has
not run on real weights here; the settings follow Coqui's
recipes/ljspeech/xtts_v2/train_gpt_xtts.py.

Only the GPT is trained; the DVAE (which turns the clips into audio tokens)
and the HiFi-GAN decoder stay as they are. The slim checkpoint keeps the
XTTS weights without the DVAE and carries the GPT conditioning latents and
speaker embedding computed from the voice's clips, so the model file's
sha256 also fixes whose voice it speaks in. `--steps 0` computes those alone:
zero-shot cloning from the enrollment, without fine-tuning.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pipeline.errors import InputError
from pipeline.train.checkpoint import (
    SLIM_CONFIG, SLIM_MODEL, VOXGATE_KEY, BaseModel, RunResult, StepReport, run_steps, save_atomic, step_trainer_class,
)
from pipeline.train.dataset import ClipLimits, DatasetReport

logger = logging.getLogger(__name__)

SAMPLE_RATE: Final = 22_050
"""XTTS trains (and its DVAE tokenises) at 22.05 kHz and speaks at 24 kHz."""

MAX_WAV_SAMPLES: Final = 255_995
"""GPTArgs.max_wav_length: Coqui's dataset skips longer clips without a word (about 11.6 s)."""

MAX_TEXT_CHARS: Final = 200
"""GPTArgs.max_text_length counts BPE tokens; 200 characters stay under it for the languages XTTS speaks."""

MIN_CLIP_S: Final = 1.0
MAIN_LOSS: Final = "loss"
SAVE_EVERY: Final = 1000
CONDITIONING_S: Final = 30.0
"""Seconds of the voice's longest clips the speaker conditioning is computed from."""

BASE_FILES: Final = ("vocab.json", "dvae.pth", "mel_stats.pth")


def clip_limits(base: BaseModel) -> ClipLimits:
    """XTTS's own limits, the same for every base (the signature matches `vits.clip_limits`)."""
    return ClipLimits(sample_rate=SAMPLE_RATE, min_s=MIN_CLIP_S, max_s=MAX_WAV_SAMPLES / SAMPLE_RATE,
                      max_text_chars=MAX_TEXT_CHARS)


def check_data(base: BaseModel, texts: Sequence[str], language: str) -> None:
    """Refuse, before any data is prepared, a base folder that is incomplete or does not speak `language`."""
    missing = [name for name in BASE_FILES if not (base.folder / name).is_file()]
    if missing:
        raise InputError(f"The XTTS base folder {base.folder} lacks {', '.join(missing)}; "
                         "use the full XTTS-v2 folder (model.pth, config.json, vocab.json, dvae.pth, mel_stats.pth).")
    inference_config = json.loads(base.config_path.read_text(encoding="utf-8"))
    if language not in inference_config.get("languages", [language]):
        raise InputError(f"XTTS does not speak {language!r}; it speaks {', '.join(inference_config['languages'])}.")


def fine_tune(
    base: BaseModel,
    dataset: DatasetReport,
    run_dir: Path,
    *,
    steps: int,
    batch_size: int,
    language: str,
    on_step: StepReport,
    voxgate: Mapping[str, Any],
) -> tuple[Path, RunResult]:
    """Train the GPT for `steps` steps (none for a zero-shot clone), then write the slim model with the conditioning."""
    import torch
    from trainer.logging.dummy_logger import DummyLogger
    from TTS.tts.configs.xtts_config import XttsAudioConfig
    from TTS.tts.layers.xtts.trainer.gpt_trainer import GPTArgs, GPTTrainer, GPTTrainerConfig

    check_data(base, [clip.text for clip in dataset.clips], language)
    inference_config = json.loads(base.config_path.read_text(encoding="utf-8"))
    # the architecture is the base's (GPTArgs extends XttsArgs); the training settings are the recipe's
    known = {f.name for f in dataclasses.fields(GPTArgs)}
    args = GPTArgs(**{k: v for k, v in inference_config.get("model_args", {}).items() if k in known})
    args.max_conditioning_length, args.min_conditioning_length = 132_300, 66_150  # 6 s and 3 s at 22.05 kHz
    args.max_wav_length, args.max_text_length = MAX_WAV_SAMPLES, MAX_TEXT_CHARS
    args.mel_norm_file = str(base.folder / "mel_stats.pth")  # its default is a web address
    args.dvae_checkpoint, args.xtts_checkpoint = str(base.folder / "dvae.pth"), str(base.checkpoint)
    args.tokenizer_file = str(base.folder / "vocab.json")
    args.gpt_use_masking_gt_prompt_approach = True
    config = GPTTrainerConfig(
        output_path=str(run_dir), run_name="coqui", model_args=args,
        audio=XttsAudioConfig(sample_rate=SAMPLE_RATE, dvae_sample_rate=SAMPLE_RATE, output_sample_rate=24_000),
        batch_size=max(1, min(batch_size, len(dataset.clips))), eval_batch_size=1, batch_group_size=48,
        num_loader_workers=4 if torch.cuda.is_available() else 0, epochs=10**9, run_eval=False,
        test_delay_epochs=10**9, print_step=25, save_step=SAVE_EVERY, save_n_checkpoints=1, save_best_after=10**12,
        optimizer="AdamW", optimizer_wd_only_on_weights=True,
        optimizer_params={"betas": [0.9, 0.96], "eps": 1e-8, "weight_decay": 1e-2}, lr=5e-06,
        lr_scheduler="MultiStepLR",
        lr_scheduler_params={"milestones": [50_000 * 18, 150_000 * 18, 300_000 * 18], "gamma": 0.5, "last_epoch": -1},
    )
    samples = [
        {"text": clip.text, "audio_file": str(clip.path), "speaker_name": "voice", "root_path": str(clip.path.parent),
         "language": language, "audio_unique_name": clip.path.stem}
        for clip in dataset.clips
    ]
    trainer_class = step_trainer_class()

    def make_trainer(trainer_args: Any) -> Any:
        return trainer_class(trainer_args, config, output_path=str(run_dir), model=GPTTrainer(config),
                             train_samples=samples, eval_samples=[], parse_command_line_args=False,
                             dashboard_logger=DummyLogger())

    # the base weights come in through GPTArgs.xtts_checkpoint, not the trainer's restore_path
    result = run_steps(make_trainer, run_dir, base, steps=steps, on_step=on_step, restore_base=False)
    xtts = result.model.xtts
    # before eval(): Xtts.eval() adds the GPT's inference wrapper, whose weights would be saved twice
    weights = {k: v.detach().cpu() for k, v in xtts.state_dict().items()}
    xtts.eval()
    references = _reference_clips(dataset)
    with torch.inference_mode():
        latent, embedding = xtts.get_conditioning_latents(
            audio_path=[str(p) for p in references], gpt_cond_len=inference_config.get("gpt_cond_len", 12),
            gpt_cond_chunk_len=inference_config.get("gpt_cond_chunk_len", 4),
            max_ref_length=inference_config.get("max_ref_len", 10),
            sound_norm_refs=inference_config.get("sound_norm_refs", False))
    block = {**voxgate, "language": language,
             "speaker": {"gpt_cond_latent": latent.cpu(), "speaker_embedding": embedding.cpu()},
             "reference_clips": [p.name for p in references]}
    shutil.copyfile(base.folder / "vocab.json", run_dir / "vocab.json")
    shutil.copyfile(base.config_path, run_dir / SLIM_CONFIG)
    path = run_dir / SLIM_MODEL
    save_atomic({"model": weights, "config": inference_config, "step": result.steps, "epoch": result.epoch,
                 VOXGATE_KEY: block}, path)
    return path, result


def _reference_clips(dataset: DatasetReport) -> list[Path]:
    """The longest clips, up to CONDITIONING_S in all: long clips carry the most of the speaker's prosody."""
    chosen, total = [], 0.0
    for clip in sorted(dataset.clips, key=lambda c: c.duration_s, reverse=True):
        if total >= CONDITIONING_S:
            break
        chosen.append(clip.path)
        total += clip.duration_s
    return chosen
