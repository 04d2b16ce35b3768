"""Which seconds of a file are genuine: the waveform match and the payload mark, second by second. Pure.

A mark or a match proves that *some* of a file comes from a clip, not that all
of it does: 2 s of a released clip in front of 12 s of new speech still carries
the mark. So a file is localised in one-second steps (the waveform match's
block; the payload mark needs 4 s, so it is read in 4 s windows a second apart
and a second counts as marked when most windows over it read the clip). A
second is genuine when it is found, clean, in the clip's master, or — where
the waveform cannot follow (time-stretched, filtered) — when the clip's mark
reads around it. A second found in the master with other audio over it is
*mixed*: it counts against the file like one that is not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pipeline.verify.match import Block, ContentMatch

#: DERIVED needs at least this share of the audible seconds to be genuine, in the clip's order, ...
#: Measured (scripts/bench_verify.py, a 43 s release): MP3 64k, AAC 48k, Opus 12k and 24k, the first 5 s
#: cut, a 10 s excerpt: 100 %; the copy's first 2/10/30/50 s before other speech to 60 s: 8 % (or no
#: mark read at all: UNKNOWN), 19 %, 50 %, 81 %; espeak-ng speech mixed 12 dB under: 71 % (now 26 %,
#: with the file-level residual in match.py). A cut makes at most the one second across each join miss.
DERIVED_SHARE: Final = 0.8
#: ... and no run of this many audible seconds in a row that are not the clip: that is inserted material,
#: whatever its share (50 s of a copy then 10 s of other speech is 81 % genuine, and a forgery).
INSERTED_RUN_S: Final = 3
#: At the file's start or end there is no join for a cut to straddle: this many audible seconds there that are
#: not the clip are material added before or after it (a short "... and vote for X" appended to a real clip).
EDGE_RUN_S: Final = 2
#: The payload mark fills in seconds the waveform does not find where the waveform cannot follow the file at all
#: (time-stretched, filtered: under this share of its audible seconds found). Where it follows, the mark only
#: bridges a lone missed second between two found ones (Opus 24k misses about one second in thirty): its 4 s
#: windows would otherwise smear a clip's mark over audio added next to it.
WAVEFORM_FOLLOWS: Final = 0.5
#: Under this share of the clip's own audible seconds, a derived file is called an excerpt.
EXCERPT_BELOW: Final = 0.9
SYMBOLS: Final = {Block.GENUINE: "█", Block.MIXED: "▒", Block.ABSENT: "░", Block.SILENT: "·"}
LEGEND: Final = "█ genuine  ▒ clip with other audio over it  ░ not from the clip  · silent  (one per second)"


@dataclass(frozen=True)
class Timeline:
    """Each second of a file against one clip, and how each genuine second was shown."""

    clip_id: int
    seconds: tuple[Block, ...]
    by_mark: tuple[bool, ...]  # genuine because the clip's payload mark reads there (not found by waveform)
    in_order: bool
    clip_covered: float | None  # the share of the clip's audible seconds the genuine ones come from; None: unknown

    def count(self, *states: Block) -> int:
        return sum(s in states for s in self.seconds)

    @property
    def audible_s(self) -> int:
        return len(self.seconds) - self.count(Block.SILENT)

    @property
    def genuine_s(self) -> int:
        return self.count(Block.GENUINE)

    @property
    def share(self) -> float:
        return self.genuine_s / self.audible_s if self.audible_s else 0.0

    @property
    def longest_foreign_run(self) -> int:
        """The most audible seconds in a row that are not the clip (silence does not break a run)."""
        longest = run = 0
        for s in self.seconds:
            if s in (Block.ABSENT, Block.MIXED):
                run += 1
                longest = max(longest, run)
            elif s is Block.GENUINE:
                run = 0
        return longest

    @property
    def edge_foreign_run(self) -> int:
        """The most audible seconds that are not the clip before its first genuine second, or after its last."""
        def leading(seconds: tuple[Block, ...]) -> int:
            run = 0
            for s in seconds:
                if s is Block.GENUINE:
                    break
                run += s in (Block.ABSENT, Block.MIXED)
            return run

        return max(leading(self.seconds), leading(self.seconds[::-1]))

    @property
    def derived(self) -> bool:
        """Most of the audible audio comes from the clip, in its order, with nothing inserted or added."""
        return (self.audible_s > 0 and self.share >= DERIVED_SHARE and self.in_order
                and self.longest_foreign_run < INSERTED_RUN_S and self.edge_foreign_run < EDGE_RUN_S)

    def spans(self, *states: Block) -> list[tuple[int, int]]:
        """[start, end) seconds where the file is in one of `states` (silence inside a span joins it)."""
        spans: list[tuple[int, int]] = []
        for i, s in enumerate(self.seconds):
            if s in states:
                if spans and all(x is Block.SILENT for x in self.seconds[spans[-1][1]:i]):
                    spans[-1] = (spans[-1][0], i + 1)
                else:
                    spans.append((i, i + 1))
        return spans

    def bar(self) -> str:
        return "".join(SYMBOLS[s] for s in self.seconds)

    def as_dict(self) -> dict[str, object]:
        return {"clip": self.clip_id, "step_s": 1, "seconds": [s.value for s in self.seconds],
                "by_mark": [i for i, m in enumerate(self.by_mark) if m], "bar": self.bar(), "legend": LEGEND,
                "audible_s": self.audible_s, "genuine_s": self.genuine_s, "share": round(self.share, 3),
                "in_order": self.in_order,
                "clip_covered": None if self.clip_covered is None else round(self.clip_covered, 3)}


def localise(clip_id: int, content: ContentMatch | None, marks: tuple[int | None, ...],
             silent: tuple[bool, ...]) -> Timeline | None:
    """Combine the waveform match against `clip_id`'s master with the per-second mark readings.

    `marks[i]` is the clip whose mark reads around second i (None: none; the tuple is empty or short
    where the mark was not read); `silent[i]` says the second is too quiet to judge. None when the file
    could not be cut into seconds at all.
    """
    if content is not None and content.blocks:
        base = list(content.blocks)
    elif silent:
        base = [Block.SILENT if quiet else Block.ABSENT for quiet in silent]
    else:
        return None
    by_mark = [False] * len(base)
    follows = content is not None and content.coverage >= WAVEFORM_FOLLOWS
    found = list(base)
    for i, state in enumerate(found):
        # Where the waveform follows the file, the mark only bridges a lone second it missed (a codec's quiet
        # stretch) between two it found: never a run, never the file's first or last second.
        isolated = 0 < i < len(found) - 1 and found[i - 1] is found[i + 1] is Block.GENUINE
        if state is Block.ABSENT and i < len(marks) and marks[i] == clip_id and (isolated or not follows):
            base[i], by_mark[i] = Block.GENUINE, True
    in_order = content.in_order if content is not None else True
    covered = None  # the clip's length is unknown without its master
    if content is not None and content.master_audible_s:
        covered = min(1.0, content.clip_covered + sum(by_mark) / content.master_audible_s)
    return Timeline(clip_id, tuple(base), tuple(by_mark), in_order, covered)
