"""The heavy parts of a render (engines, the presence watermark, the recogniser, the announcer), loaded once.

Shared by the render, personal copies, videos and the portal: one process loads each model once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tools:
    """The heavy parts, loaded once per render run and shared across statements."""

    engines: dict[str, Any] = field(default_factory=dict)
    presence: Any = None
    transcriber: Any = None
    announcer: Any = None

    def engine(self, ref: Any) -> Any:
        from pipeline.synth import create_engine, verify_model

        verify_model(ref)  # every render: the consent covers this model, byte for byte
        key = f"{ref.engine}:{ref.model_path}"
        if key not in self.engines:
            engine = create_engine(ref)
            engine.load()
            self.engines[key] = engine
        return self.engines[key]

    def presence_mark(self) -> Any:
        if self.presence is None:
            from pipeline.provenance.presence import PresenceMark

            self.presence = PresenceMark().load()
        return self.presence

    def asr(self) -> Any:
        if self.transcriber is None:
            from pipeline.quality.asr import Transcriber

            self.transcriber = Transcriber()
            self.transcriber.load()
        return self.transcriber

    def announcer_engine(self) -> Any:
        if self.announcer is None:
            from pipeline.synth import PiperEngine, packaged_voice

            onnx, config = packaged_voice()
            self.announcer = PiperEngine(onnx, config)
            self.announcer.load()
        return self.announcer
