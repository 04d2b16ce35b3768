"""The heavy parts of a render (engines, the presence watermark, the recogniser, the announcer), loaded once.

Shared by the render, personal copies, videos and the portal: one process loads each model once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Tools:
    """The heavy parts, loaded once per render run and shared across statements."""

    engines: dict[str, Any] = field(default_factory=dict)
    presence: Any = None
    disclosures: dict[str, np.ndarray] = field(default_factory=dict)
    loaded: dict[str, Any] = field(default_factory=dict)

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

    def asr(self, spec: Any = None, *, beside: bool = False) -> Any:
        """The bundled recogniser, or with `spec` a configured one (checked against its pin, loaded once).

        `beside`: the same model on one thread, for recognition that runs beside other work (the render's
        gate): 64 s of speech costs 6.1 CPU-s on one thread against 7.3 on two, as the threads no longer
        wait for each other, and its longer wall time is hidden behind the export (measured on 2 cores).
        """
        from pipeline.quality.recognisers import check_pinned, load_transcriber

        configured = spec is not None and spec.path is not None
        if configured:
            check_pinned(spec)
        threads = 1 if beside else 0
        key = f"asr:{spec.path}:{','.join(sorted(spec.languages))}" if configured else "asr:bundled"
        return self.cached(f"{key}:{threads}", lambda: load_transcriber(spec if configured else None, threads=threads))

    def disclosure(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The spoken disclosure for `key` (made once per announcer, text and settings, then reused)."""
        if key not in self.disclosures:
            self.disclosures[key] = make()
        return self.disclosures[key]

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """An engine (announcers, configured recognisers) built and loaded once per run."""
        if key not in self.loaded:
            engine = build()
            engine.load()
            self.loaded[key] = engine
        return self.loaded[key]
