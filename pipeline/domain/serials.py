"""The payload mark's 32-bit serials: a clip's own, or one recipient's copy of a clip.

The registered files of a released clip carry the clip's id. Every copy
handed to someone (a portal download, a CLI export) is a *delivery*, and
carries its delivery id in the upper half of the serial space, so one
reading of the mark says which clip and, for a copy, whose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pipeline.errors import InputError

SERIAL_BITS: Final = 32
DELIVERY_BASE: Final = 1 << (SERIAL_BITS - 1)


@dataclass(frozen=True)
class Serial:
    """What a serial names: a clip's registered files (delivery None) or one delivery."""

    value: int
    delivery: int | None

    @property
    def is_delivery(self) -> bool:
        return self.delivery is not None


def clip_serial(clip_id: int) -> int:
    if not 0 < clip_id < DELIVERY_BASE:
        raise InputError(f"Clip ids run from 1 to {DELIVERY_BASE - 1}; {clip_id} cannot be marked.")
    return clip_id


def delivery_serial(delivery_id: int) -> int:
    if not 0 < delivery_id < DELIVERY_BASE:
        raise InputError(f"Delivery ids run from 1 to {DELIVERY_BASE - 1}; {delivery_id} cannot be marked.")
    return DELIVERY_BASE + delivery_id


def parse_serial(value: int) -> Serial:
    """Which kind of serial `value` is (any 32-bit value; 0 names nothing we issue)."""
    if not 0 <= value < 1 << SERIAL_BITS:
        raise InputError(f"A payload serial is a {SERIAL_BITS}-bit number, not {value}.")
    return Serial(value, value - DELIVERY_BASE if value >= DELIVERY_BASE else None)
