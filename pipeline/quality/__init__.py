"""Quality gates a rendered clip must pass before anyone is asked to approve it."""

from pipeline.quality.asr import Transcriber, Transcript, Word, supports
from pipeline.quality.wer import normalise_words, word_error_rate

__all__ = ["Transcriber", "Transcript", "Word", "normalise_words", "supports", "word_error_rate"]
