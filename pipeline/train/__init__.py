"""Fine-tuning Coqui models on a voice's enrolled recordings: data preparation, trainer runs, slim checkpoints.

Torch and TTS are imported inside the functions that need them, so
importing this package stays cheap.
"""

from __future__ import annotations

from pipeline.train.checkpoint import BaseModel, latest_checkpoint, resolve_base
from pipeline.train.dataset import ClipLimits, DatasetReport, DropReason, Recording, prepare

__all__ = [
    "BaseModel",
    "ClipLimits",
    "DatasetReport",
    "DropReason",
    "Recording",
    "latest_checkpoint",
    "prepare",
    "resolve_base",
]
