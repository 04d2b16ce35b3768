"""Checkpoints and resumable runs: the base model to fine-tune, the trainer loop, the slim model a voice points at.

A Coqui trainer checkpoint carries everything needed to continue training:
for VITS the discriminator and both optimisers (85 MB for the tests' tiny
VITS, whose generator alone is 5.8 MB). Synthesis needs only the generator,
so the model a voice points at is a slim copy: generator weights, the config with the discriminator
switched off, and voxgate's own block (what it was trained on), written
atomically so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pipeline.errors import EngineError, InputError
from pipeline.hashing import sha256_file
from pipeline.store.files import atomic_output

logger = logging.getLogger(__name__)

SLIM_MODEL: Final = "model.pth"
SLIM_CONFIG: Final = "config.json"
VOXGATE_KEY: Final = "voxgate"
"""Key of voxgate's block in a slim checkpoint (training provenance; XTTS speaker conditioning)."""

_CHECKPOINT: Final = re.compile(r"^checkpoint_(\d+)\.pth$")
_MODEL_FILES: Final = ("model.pth", "model_file.pth", "best_model.pth", "checkpoint.pth")
_MODEL_NAME: Final = re.compile(r"^tts_models/[^/]+/[^/]+/[^/]+$")
_OFFLINE_HINT: Final = (
    "download it where the network allows (`tts --model_name {name} --text hello` puts it under "
    "~/.local/share/tts/), copy the model folder here and pass its path: `--base /path/to/model_folder`"
)


@dataclass(frozen=True)
class BaseModel:
    """A checkpoint to fine-tune from, with its config and what kind of model it is."""

    checkpoint: Path
    config_path: Path
    kind: str
    """The config's `model` field: "vits", "xtts", …"""
    sha256: str

    @property
    def folder(self) -> Path:
        return self.checkpoint.parent


def resolve_base(base: str) -> BaseModel:
    """A base model from a checkpoint file, a model folder or a Coqui model name.

    A file needs a `config.json` beside it; a folder holds `config.json` and
    one of the usual checkpoint names. A name such as
    `tts_models/en/ljspeech/vits` is looked up in Coqui's model list and
    fetched by its ModelManager, unless the network is off (HF_HUB_OFFLINE=1)
    and it is not already in Coqui's local cache: then the error says how to
    give a local path instead.
    """
    path = Path(base).expanduser()
    if path.exists():
        checkpoint = _checkpoint_in(path) if path.is_dir() else path
        config = checkpoint.parent / SLIM_CONFIG
    elif _MODEL_NAME.match(base):
        checkpoint, config = _fetch_coqui_model(base)
    else:
        raise InputError(
            f"--base {base!r} is neither an existing path nor a Coqui model name such as "
            "tts_models/en/ljspeech/vits; pass a checkpoint file or a model folder."
        )
    if not config.is_file():
        raise InputError(f"The base model {checkpoint} has no {SLIM_CONFIG} beside it; copy the model's config there.")
    try:
        kind = str(json.loads(config.read_text(encoding="utf-8"))["model"]).lower()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{config} is not a Coqui model config (no readable `model` field): {exc}.") from exc
    return BaseModel(checkpoint, config, kind, sha256_file(checkpoint))


def _checkpoint_in(folder: Path) -> Path:
    for name in _MODEL_FILES:
        if (folder / name).is_file():
            return folder / name
    latest = latest_checkpoint(folder)
    if latest is None:
        raise InputError(f"No checkpoint in {folder}; expected one of {', '.join(_MODEL_FILES)} or checkpoint_N.pth.")
    return latest[0]


def _fetch_coqui_model(name: str) -> tuple[Path, Path]:
    from TTS.utils.manage import ModelManager

    manager = ModelManager(progress_bar=False)
    if name not in manager.list_tts_models():
        raise InputError(f"{name} is not in Coqui's model list; see `tts --list_models`.")
    # ModelManager's cache layout: <data dir>/tts/<type>--<lang>--<dataset>--<model>
    cached = Path(manager.output_prefix) / name.replace("/", "--")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") and not cached.is_dir():
        raise EngineError(f"Coqui model {name} is not on this machine and the network is off; "
                          + _OFFLINE_HINT.format(name=name) + ".")
    try:
        checkpoint, config, _ = manager.download_model(name)
    except (OSError, RuntimeError, ValueError) as exc:  # requests' and huggingface_hub's errors are OSErrors
        raise EngineError(f"Could not fetch Coqui model {name} ({exc}); " + _OFFLINE_HINT.format(name=name) + ".") from exc
    if config is None:
        raise EngineError(f"Coqui model {name} came without a config.json; pass a local model folder with --base.")
    return Path(checkpoint), Path(config)


def latest_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The trainer checkpoint (`checkpoint_N.pth`, anywhere under `folder`) with the highest step, and that step."""
    found = [(path, int(m.group(1))) for path in folder.rglob("checkpoint_*.pth") if (m := _CHECKPOINT.match(path.name))]
    return max(found, key=lambda item: item[1]) if found else None


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file, fsync, rename into place: readers see the old file or the new one."""
    import torch

    with atomic_output(path) as tmp, tmp.open("wb") as handle:
        torch.save(state, handle)


def write_config(config: dict[str, Any], path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True, default=str), encoding="utf-8")


def slim_vits(model_state: dict[str, Any], config: dict[str, Any], out_dir: Path, *, step: int, epoch: int,
              voxgate: dict[str, Any]) -> Path:
    """Write the inference-only VITS model: generator weights and a config without the discriminator.

    `init_discriminator=False` in the config is what lets Coqui build the
    model without the discriminator and load these weights strictly.
    """
    config = json.loads(json.dumps(config, default=str))  # a deep copy that is plain JSON
    config["model_args"]["init_discriminator"] = False
    weights = {k: v.detach().cpu() for k, v in model_state.items() if not k.startswith("disc.")}
    write_config(config, out_dir / SLIM_CONFIG)
    path = out_dir / SLIM_MODEL
    # step and epoch are there for Coqui's restore_model, so a slim model can itself be a base
    save_atomic({"model": weights, "config": config, "step": step, "epoch": epoch, VOXGATE_KEY: voxgate}, path)
    logger.info("Slim VITS model %s: %.1f MB", path, path.stat().st_size / 1e6)
    return path


StepReport = Callable[[int, Mapping[str, float]], None]
"""Called after every optimiser step with the steps done so far and that step's losses."""


class _StepLimitReached(Exception):
    """Raised inside the trainer's loop when the run has done its steps; never escapes `run_steps`."""


@dataclass(frozen=True)
class RunResult:
    """A finished (or already finished) trainer run."""

    model: Any
    """The trained model, on the device it trained on."""
    config: Any
    steps: int
    epoch: int
    resumed_from: int | None
    """Steps already done by an earlier, interrupted run of the same folder; None for a fresh run."""
    device: str
    mean_step_s: float | None


def run_steps(
    make_trainer: Callable[[Any], Any],
    run_dir: Path,
    base: BaseModel,
    *,
    steps: int,
    on_step: StepReport,
    restore_base: bool = True,
) -> RunResult:
    """Run Coqui's trainer in `run_dir` until `steps` optimiser steps are done, resuming if it holds a checkpoint.

    `make_trainer(trainer_args)` builds the `StepTrainer` (see
    `step_trainer_class`). A fresh run restores the base model's weights
    (`TrainerArgs(restore_path=…)`) unless `restore_base` is False because
    the model loads them itself; a resumed run continues from the last
    checkpoint with its optimiser state (`TrainerArgs(continue_path=…)`).
    On Ctrl+C the steps done so far are saved before the interrupt
    propagates, so the same command continues where it stopped. The last
    state is always saved, so a later run with more steps continues from it.
    """
    from trainer import TrainerArgs

    latest = latest_checkpoint(run_dir)
    if latest is None:
        args = TrainerArgs(restore_path=str(base.checkpoint) if restore_base else "")
    else:
        args = TrainerArgs(continue_path=str(latest[0].parent))
        logger.info("Resuming %s from %s", run_dir, latest[0])
    with _trainer_console_quiet():
        trainer = make_trainer(args)
        trainer.step_limit, trainer.on_step = steps, on_step
        resumed_from = trainer.total_steps_done if latest is not None else None
        started, start_step = time.monotonic(), trainer.total_steps_done
        if trainer.total_steps_done < steps:
            try:
                trainer._fit()  # fit() would sys.exit on any error; we want exceptions
            except _StepLimitReached:
                pass
            except KeyboardInterrupt:
                _save_resume_point(trainer, start_step)
                raise
            _save_resume_point(trainer, start_step)
    done = trainer.total_steps_done - start_step
    return RunResult(
        model=trainer.model, config=trainer.config, steps=trainer.total_steps_done, epoch=trainer.epochs_done,
        resumed_from=resumed_from,
        device="cuda" if trainer.use_cuda else "cpu",
        mean_step_s=(time.monotonic() - started) / done if done else None,
    )


def _save_resume_point(trainer: Any, start_step: int) -> None:
    """Save a full checkpoint if this run made progress.

    The trainer numbers a checkpoint by the step index it was saved at and
    resumes at that index plus one, so a checkpoint after n steps is saved
    as step n - 1.
    """
    from trainer.io import save_checkpoint

    if trainer.total_steps_done <= start_step:
        return
    save_checkpoint(
        trainer.config, trainer.model, trainer.output_path,
        current_step=trainer.total_steps_done - 1, epoch=trainer.epochs_done,
        optimizer=trainer.optimizer, scheduler=trainer.scheduler,
        scaler=trainer.scaler if trainer.use_amp_scaler else None,
        save_n_checkpoints=trainer.config.save_n_checkpoints,
    )


def step_trainer_class() -> type:
    """Coqui's Trainer, made to stop after `step_limit` steps and to report each step's losses.

    Built on first use so that importing voxgate does not import torch.
    """
    from trainer import Trainer

    class StepTrainer(Trainer):  # type: ignore[misc]
        step_limit: int = 0
        on_step: StepReport | None = None

        def save_training_script(self) -> None:
            """Skip: Coqui copies sys.argv[0] into the run folder, which here is voxgate's CLI or pytest."""

        def train_step(self, *args: Any, **kwargs: Any) -> Any:
            outputs, loss_dict = super().train_step(*args, **kwargs)
            if self.on_step is not None and loss_dict:
                self.on_step(self.total_steps_done,
                             {k: float(v) for k, v in loss_dict.items() if k.startswith("loss")})
            if self.total_steps_done >= self.step_limit:
                raise _StepLimitReached
            return outputs, loss_dict

    return StepTrainer


@contextlib.contextmanager
def _trainer_console_quiet() -> Iterator[None]:
    """Keep Coqui's trainer off the console (its log file in the run folder stays) and restore its handlers after.

    `trainer.logger` adds a stderr handler at import and each Trainer adds a
    file handler; without this the progress bar is buried in loss tables and
    handlers pile up across runs in one process.
    """
    trainer_logger = logging.getLogger("trainer")
    before = list(trainer_logger.handlers)
    trainer_logger.handlers = [h for h in before if type(h) is not logging.StreamHandler]
    try:
        yield
    finally:
        for handler in trainer_logger.handlers:
            if handler not in before:
                handler.close()
        trainer_logger.handlers = before
