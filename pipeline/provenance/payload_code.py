"""The keyed code behind the payload mark: seal a 32-bit serial, spread it, decode it blind.

Why a home-made code rather than a textbook convolutional code with a fixed
spreading sequence: a fixed sequence is the same in every clip, so averaging
many marked clips reveals it (and then removes it). Here the chip pattern of a
step depends on the encoder *state*, i.e. on the message bits themselves:

* message  = whitened serial (32 bits) ‖ tag (32 bits), where tag is a keyed
  MAC of the serial and the whitening is keyed by the tag (an SIV-style
  construction), so every message bit looks random even for serials 1, 2, 3…;
* trellis  = a tail-biting shift register of `MEMORY` bits, one message bit a
  step; the chips of a step are ``±labels[state]`` (sign = the new bit), with
  ``labels`` a keyed random ±1 matrix of `STATES` rows;
* decoding = soft Viterbi over the circular trellis (wrap-around, three laps).

Two clips with different serials share a step's chip pattern only when the
encoder is in the same state there (probability 1/`STATES`), and then with a
random sign, so the average of many clips tends to zero instead of to the
pattern. The trellis is the same at every step, so a clip cut anywhere
decodes to a *rotation* of its message; the rotation is found by trying all
`MESSAGE_BITS` of them against the MAC, which also makes the false-positive
rate a counted number: `MESSAGE_BITS` × (alignments tried) × 2^-`TAG_BITS`.

Limits: a serial used twice gives the same pattern twice (serials are unique
per clip); and an attacker who knows this design and holds very many clips
under one key could try to cluster their step patterns into the 2·`STATES`
labels. Deriving a key per purpose or per voice (`derive_key`) bounds the
number of clips any one key marks.

On Gaussian noise the code decodes 95 % of messages at a confidence
(`correlation_z`) of 12, 99 % at 14 and all of 200 at 16.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

import numpy as np

PAYLOAD_BITS: Final = 32
TAG_BITS: Final = 32
#: One message bit per trellis step, so this is also the number of steps in one period of the mark.
MESSAGE_BITS: Final = PAYLOAD_BITS + TAG_BITS
#: Shift-register length; the shortest error event spans MEMORY + 1 steps (distance ≈ (1 + MEMORY/2) steps of chips).
MEMORY: Final = 8
STATES: Final = 1 << MEMORY
#: Laps of the circular trellis the wrap-around Viterbi runs; decisions come from the middle one.
VITERBI_LAPS: Final = 3

_STATE_MASK: Final = STATES - 1
_HIGH_BIT: Final = STATES >> 1
_NEXT_STATES: Final = np.arange(STATES)
# Each state has two predecessors: the register shifted right, with the dropped bit 0 or 1.
_PRED_LOW: Final = _NEXT_STATES >> 1
_PRED_HIGH: Final = _PRED_LOW | _HIGH_BIT
_NEW_BIT_SIGN: Final = (2 * (_NEXT_STATES & 1) - 1).astype(np.float64)


@dataclass(frozen=True)
class CodeKeys:
    """Everything the code derives from the mark key: chip labels, MAC key and whitening key."""

    labels: np.ndarray  # (STATES, chips) of ±1.0
    mac_key: bytes
    whiten_key: bytes

    @classmethod
    def derive(cls, key: bytes, chips: int) -> CodeKeys:
        """Expand `key` into independent sub-keys; SHAKE-256 gives the label bits (a PRF of the key)."""
        stream = hashlib.shake_256(b"voxgate/payload/labels\0" + key).digest(STATES * chips // 8 + 1)
        bits = np.unpackbits(np.frombuffer(stream, np.uint8))[: STATES * chips]
        labels = (2.0 * bits - 1.0).reshape(STATES, chips)
        return cls(
            labels=labels,
            mac_key=hmac.digest(key, b"voxgate/payload/mac", "sha256"),
            whiten_key=hmac.digest(key, b"voxgate/payload/whiten", "sha256"),
        )


def seal(payload: int, keys: CodeKeys) -> np.ndarray:
    """The message bits (0/1, length MESSAGE_BITS) for `payload`: whitened serial then tag."""
    tag = _tag(payload, keys)
    data = payload ^ _whitening(tag, keys)
    return _to_bits((data << TAG_BITS) | tag, MESSAGE_BITS)


def open_rotation(bits: np.ndarray, keys: CodeKeys) -> tuple[int, int] | None:
    """(payload, rotation) for the first rotation of decoded `bits` whose tag checks, else None.

    `rotation` is how many steps the decoded circle is ahead of the sealed message.
    """
    for rotation in range(MESSAGE_BITS):
        word = _from_bits(np.roll(bits, -rotation))
        data, tag = word >> TAG_BITS, word & ((1 << TAG_BITS) - 1)
        payload = data ^ _whitening(tag, keys)
        if hmac.compare_digest(_tag(payload, keys).to_bytes(4, "big"), tag.to_bytes(4, "big")):
            return payload, rotation
    return None


def chips(message: np.ndarray, keys: CodeKeys) -> np.ndarray:
    """The (MESSAGE_BITS, chips) ±1 pattern of one period: step i carries ±labels[state before bit i]."""
    signs = 2.0 * message - 1.0
    return signs[:, None] * keys.labels[states(message)]


def decode(soft: np.ndarray, keys: CodeKeys) -> np.ndarray:
    """Most likely circular messages for soft chip values `soft` (batch, MESSAGE_BITS, chips) -> (batch, MESSAGE_BITS).

    Larger positive `soft` means chip +1 is more likely; the branch metric is the
    correlation of a step's soft values with the branch's chips (matched filter).
    """
    batch, steps, _ = soft.shape
    # (batch, steps, STATES): correlation of each step with each state's label; a branch adds ± this.
    state_corr = soft @ keys.labels.T
    laps = np.tile(state_corr, (1, VITERBI_LAPS, 1))
    metric = np.zeros((batch, STATES))
    from_high = np.zeros((VITERBI_LAPS * steps, batch, STATES), dtype=bool)
    for t in range(VITERBI_LAPS * steps):
        branch = laps[:, t, :]
        via_low = metric[:, _PRED_LOW] + _NEW_BIT_SIGN * branch[:, _PRED_LOW]
        via_high = metric[:, _PRED_HIGH] + _NEW_BIT_SIGN * branch[:, _PRED_HIGH]
        high = via_high > via_low
        from_high[t] = high
        metric = np.where(high, via_high, via_low)
        metric -= metric.max(axis=1, keepdims=True)  # keep the numbers small over long runs
    state = metric.argmax(axis=1)
    rows = np.arange(batch)
    bits = np.zeros((batch, VITERBI_LAPS * steps), dtype=np.uint8)
    for t in range(VITERBI_LAPS * steps - 1, -1, -1):
        bits[:, t] = state & 1
        state = np.where(from_high[t, rows, state], _PRED_HIGH[state], _PRED_LOW[state])
    middle = (VITERBI_LAPS // 2) * steps
    return bits[:, middle : middle + steps]


def correlation_z(soft: np.ndarray, pattern: np.ndarray) -> float:
    """How far `soft` leans towards `pattern`, in standard deviations of a random ±1 pattern.

    For a pattern chosen independently of the audio it is about N(0, 1); for
    the decoder's own best path on unmarked audio it is higher (the best of
    many), which is why only the tag decides. It is the confidence we report
    and the margin the embedder checks.
    """
    energy = float(np.sum(soft * soft))
    if energy <= 0.0:
        return 0.0
    return float(np.sum(soft * pattern)) / np.sqrt(energy)


def states(message: np.ndarray) -> np.ndarray:
    """Register contents (the label row each step uses) before each step of the circular message: bit k of the state is bit i-1-k."""
    states = np.zeros(len(message), dtype=np.int64)
    for k in range(MEMORY):
        states |= np.roll(message.astype(np.int64), k + 1) << k
    return states & _STATE_MASK


def _tag(payload: int, keys: CodeKeys) -> int:
    digest = hmac.digest(keys.mac_key, payload.to_bytes(PAYLOAD_BITS // 8, "big"), "sha256")
    return int.from_bytes(digest[: TAG_BITS // 8], "big")


def _whitening(tag: int, keys: CodeKeys) -> int:
    digest = hmac.digest(keys.whiten_key, tag.to_bytes(TAG_BITS // 8, "big"), "sha256")
    return int.from_bytes(digest[: PAYLOAD_BITS // 8], "big")


def _to_bits(value: int, width: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(value.to_bytes(width // 8, "big"), np.uint8))


def _from_bits(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8)).tobytes(), "big")
