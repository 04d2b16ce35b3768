"""Fine-tuning a single-speaker Coqui VITS on a voice's prepared clips.

The base model's own config fixes the architecture, audio settings and text
front end (characters or espeak-ng phonemes); only the run settings change,
and a phoneme base is made to phonemise the voice's language (`phonemise_in`).
Before any step, every symbol the data needs and the base has no id for is
reported and training refused: Coqui's tokenizer would drop it silently.
Coqui's trainer drives the GAN training; `checkpoint.run_steps` bounds it by
steps, resumes it, and keeps its console output out of the progress bar.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pipeline.errors import InputError
from pipeline.train.checkpoint import BaseModel, RunResult, StepReport, run_steps, slim_vits, step_trainer_class
from pipeline.train.dataset import ClipLimits, DatasetReport

logger = logging.getLogger(__name__)

MIN_CLIP_S: Final = 1.0
"""Shorter clips give VITS's random spectrogram segments little to learn from."""

MAX_CLIP_S: Final = 15.0
"""Longer clips cost GPU memory quadratically in the monotonic alignment search for little gain."""

MAX_TEXT_CHARS: Final = 300

SAVE_EVERY: Final = 500
"""Steps between resume checkpoints: a crash loses at most this much work."""

MAIN_LOSS: Final = "loss_mel"
"""The loss a progress display shows: the L1 mel distance, the one that tracks how the voice sounds."""

BATCH_GROUP_SIZE: Final = 5
"""Coqui shuffles within groups of this many batches of similar length; without it every epoch has one order."""


def clip_limits(base: BaseModel) -> ClipLimits:
    """The clip lengths this base accepts: our bounds, narrowed by the base config's own."""
    config = _load_config(base)
    rate = int(config.audio.sample_rate)
    return ClipLimits(
        sample_rate=rate,
        min_s=max(MIN_CLIP_S, float(config.min_audio_len) / rate),
        max_s=min(MAX_CLIP_S, float(config.max_audio_len) / rate),
        max_text_chars=int(min(MAX_TEXT_CHARS, config.max_text_len)),
    )


def check_data(base: BaseModel, texts: Sequence[str], language: str) -> None:
    """Refuse, before any data is prepared, transcripts with a symbol the base cannot represent, as `fine_tune` does."""
    config = _load_config(base)
    phonemise_in(config, language, base=base.checkpoint)
    refuse_unrepresentable([training_text(text, language) for text in texts], config, language, base=base.checkpoint)


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
    """Fine-tune `base` on `dataset` for `steps` steps in `run_dir`; returns the slim model's path and the run."""
    import torch
    from trainer.logging.dummy_logger import DummyLogger
    from TTS.tts.models import setup_model

    config = _load_config(base)
    limits = dataset.limits
    config.output_path = str(run_dir)
    config.run_name = "coqui"
    config.batch_size = config.eval_batch_size = max(1, min(batch_size, len(dataset.clips)))
    config.batch_group_size = BATCH_GROUP_SIZE
    config.epochs = 10**9  # bounded by steps, not epochs
    config.run_eval = False  # enrollments are small: every clip trains
    config.test_delay_epochs = 10**9
    config.test_sentences = []
    config.save_step = SAVE_EVERY
    config.save_n_checkpoints = 1
    config.save_best_after = 10**12  # "best" by training loss means little in a GAN; we keep the last state
    config.num_loader_workers = 4 if torch.cuda.is_available() else 0
    config.datasets = []
    # our dataset step already applied these limits and reported what it dropped; match them so Coqui drops nothing
    config.min_audio_len = 1
    config.max_audio_len = math.ceil(limits.max_s * limits.sample_rate) + 1
    config.min_text_len = 1
    config.max_text_len = limits.max_text_chars
    if config.use_phonemes:
        config.phoneme_cache_path = str(run_dir / "phonemes")
    config.model_args.init_discriminator = True  # a slim base has it off; GAN training needs it
    samples = [
        {"text": training_text(clip.text, language), "audio_file": str(clip.path), "speaker_name": "voice", "root_path": str(clip.path.parent),
         "language": language, "audio_unique_name": clip.path.stem}
        for clip in dataset.clips
    ]
    phonemise_in(config, language, base=base.checkpoint)
    refuse_unrepresentable([x["text"] for x in samples], config, language, base=base.checkpoint)
    trainer_class = step_trainer_class()

    def make_trainer(args: Any) -> Any:
        return trainer_class(args, config, output_path=str(run_dir), model=setup_model(config),
                             train_samples=samples, eval_samples=[], parse_command_line_args=False,
                             dashboard_logger=DummyLogger())

    result = run_steps(make_trainer, run_dir, base, steps=steps, on_step=on_step)
    path = slim_vits(result.model.state_dict(), result.config.to_dict(), run_dir,
                     step=result.steps, epoch=result.epoch, voxgate=dict(voxgate))
    return path, result


def training_text(text: str, language: str) -> str:
    """The text a clip is trained on: for Urdu the spoken form (numbers in words), as synthesis will see it."""
    if language.split("-")[0].lower() == "ur":
        from pipeline.synth.urdu import speakable_urdu

        return speakable_urdu(text)
    return text


def model_symbols(config: Any) -> set[str]:
    """Every symbol the base's text front end has an id for: Coqui's own vocabulary, built from the base config."""
    return {symbol for symbol in _tokenizer(config).characters.vocab if symbol}


def data_symbols(texts: Sequence[str], config: Any, language: str) -> dict[str, int]:
    """Each symbol the data needs (characters, or espeak-ng IPA phonemes when the base uses phonemes), counted.

    Computed by Coqui's own front end as its dataset runs it during training (the base's cleaner with the
    clip's language, then its phonemiser), so the check sees exactly what the model would be fed.
    """
    from TTS.tts.utils.languages import normalize_language

    tokenizer = _tokenizer(config)
    counts: dict[str, int] = {}
    for text in texts:
        if tokenizer.text_cleaner is not None:
            text = tokenizer.text_cleaner(text, lang=normalize_language(language))
        if tokenizer.phonemizer is not None:
            text = tokenizer.phonemizer.phonemize(text, separator="", language=language)
        for symbol in text:
            counts[symbol] = counts.get(symbol, 0) + 1
    return counts


def refuse_unrepresentable(texts: Sequence[str], config: Any, language: str, *, base: Path) -> None:
    """Raise InputError naming every symbol of the data the base cannot represent, before any training step.

    Coqui's tokenizer drops unknown symbols silently, which would teach the voice to skip sounds.
    """
    known = model_symbols(config)
    missing = {s: n for s, n in data_symbols(texts, config, language).items() if s not in known}
    if not missing:
        return
    kind = "phoneme" if config.use_phonemes else "character"
    shown = ", ".join(f"{s!r} (U+{ord(s):04X}, {n}x)" for s, n in sorted(missing.items(), key=lambda kv: -kv[1]))
    raise InputError(
        f"The base {base} cannot represent {len(missing)} {kind}(s) of the {language!r} recordings: {shown}. "
        f"Nothing was trained; choose a base whose {kind} set covers {language!r}"
        + (" (or one that reads espeak-ng phonemes)." if kind == "character" else ".")
    )


def phonemise_in(config: Any, language: str, *, base: Path) -> None:
    """Make a phoneme base phonemise the voice's language: its `phoneme_language` becomes `language`.

    Coqui's phonemiser ignores the language of a clip and always uses the config's `phoneme_language`,
    so an English base would otherwise turn Urdu letters into English-rule phonemes without a word.
    A base already in the language keeps its own variant (en-us stays en-us for an "en" voice).
    The trained model's config carries the new language, so synthesis phonemises as training did.
    """
    if not config.use_phonemes:
        return
    if (config.phoneme_language or "").split("-")[0].lower() == language.split("-")[0].lower():
        return
    config.phoneme_language = language
    try:
        _tokenizer(config)
    except (RuntimeError, ValueError, ImportError) as exc:
        raise InputError(
            f"The base {base} reads {config.phonemizer or 'its default'} phonemes, which cannot phonemise "
            f"{language!r} ({exc}); choose a base that reads espeak-ng phonemes or {language!r} letters."
        ) from exc


def _tokenizer(config: Any) -> Any:
    """Coqui's tokenizer for the config: the one its dataset and the engine build, cleaner and phonemiser included."""
    from TTS.tts.utils.text.tokenizer import TTSTokenizer

    tokenizer, _ = TTSTokenizer.init_from_config(config)
    return tokenizer


def _load_config(base: BaseModel) -> Any:
    from TTS.config import load_config

    config = load_config(str(base.config_path))
    if config.model.lower() != "vits":
        raise InputError(f"{base.config_path} is a {config.model} config, not VITS.")
    args = config.model_args
    if args.use_speaker_embedding or args.use_d_vector_file or args.use_language_embedding:
        raise InputError(
            f"The base {base.checkpoint} is a multi-speaker or multi-language VITS; voxgate fine-tunes "
            "single-speaker models only, so the result speaks in one consenting voice. Use a single-speaker base."
        )
    return config
