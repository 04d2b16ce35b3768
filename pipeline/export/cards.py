"""The still picture of a video clip: voice portrait or generated card, AI label band, caption strips.

Every piece of text in a video is drawn here with Pillow, none by ffmpeg.
Pillow lays text out with libraqm (HarfBuzz shaping, FriBidi ordering), so
Urdu joins and runs right to left in Noto Nastaliq Urdu, the script style
Urdu readers expect. ffmpeg 5.1 (Debian) was tried first: its ``subtitles``
filter (libass 0.17.1, HarfBuzz) and its ``drawtext`` filter (FriBidi) both
render Urdu correctly in Noto Naskh Arabic, but both draw Noto Nastaliq Urdu
as empty boxes. Drawing here also keeps all text out of ffmpeg's filter
graph, so nothing there needs escaping.

Fonts are Noto, from Debian's ``fonts-noto-core`` (Noto Sans, Noto Naskh
Arabic, Noto Nastaliq Urdu). Each run of text gets the first font that has
its characters, so an Urdu caption may carry an English name or a ``"``;
text that no installed font can draw is refused rather than burnt in as
boxes. A line holding both directions is ordered by a small bidi pass
(`_runs`): strong runs keep their own direction, neutrals between runs of
one direction join them, other neutrals take the line's direction. That is
the Unicode bidi algorithm for one level of embedding, which captions need;
raqm orders the characters inside each run.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError, features

from pipeline.errors import InputError, ProvenanceError
from pipeline.export.captions import Caption, is_rtl
from pipeline.provenance.labels import ClipLabels

log = logging.getLogger(__name__)

FONT_PACKAGE: Final = "fonts-noto-core"
FONT_DIRS: Final = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
LATIN_FONT: Final = ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf")
ARABIC_FONT: Final = ("NotoNaskhArabic-Regular.ttf", "NotoNaskhArabic-Bold.ttf")
#: Urdu is written in Nastaliq; Naskh reads as Arabic to Urdu readers.
ARABIC_FONT_BY_LANGUAGE: Final = {"ur": ("NotoNastaliqUrdu-Regular.ttf", "NotoNastaliqUrdu-Bold.ttf")}
#: Nastaliq's letters are small for their em size; this brings them level with Noto Sans.
NASTALIQ_SCALE: Final = 1.15

#: "AI-generated voice" in the clip's language; languages not listed get English.
AI_VOICE_LABELS: Final = {
    "en": "AI-generated voice",
    "ur": "مصنوعی ذہانت سے تیار کردہ آواز",
}
PORTRAIT_NAMES: Final = ("portrait.png", "portrait.jpg", "portrait.jpeg", "portrait.webp")

Colour = tuple[int, int, int]
BACKGROUND_TOP: Final[Colour] = (12, 19, 36)
BACKGROUND_BOTTOM: Final[Colour] = (30, 44, 74)
LABEL_BAND_COLOUR: Final[Colour] = (255, 196, 0)  # amber: reads as a warning, unlike any portrait
LABEL_TEXT_COLOUR: Final[Colour] = (16, 16, 16)
NAME_COLOUR: Final[Colour] = (255, 255, 255)
ORGANISATION_COLOUR: Final[Colour] = (186, 198, 222)
CAPTION_TEXT_COLOUR: Final[Colour] = (255, 255, 255)
CAPTION_BOX_ALPHA: Final = 170
#: Initials discs for voices without a portrait, picked by voice id so a voice keeps its colour.
CARD_PALETTE: Final[tuple[Colour, ...]] = ((37, 99, 235), (13, 148, 136), (124, 58, 237), (190, 24, 93),
                                            (194, 65, 12), (21, 128, 61))
MIN_FONT_SIZE: Final = 18
#: Larger portraits are refused before decoding: a small file can claim a huge picture.
MAX_PORTRAIT_PIXELS: Final = 64_000_000

Box = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class CardLayout:
    """Where everything sits in one frame size; the caption strip is overlaid per caption by ffmpeg."""

    width: int
    height: int
    band: Box  # the AI label band, full width, always visible
    notice_size: int
    band_detail_size: int
    portrait_centre: tuple[int, int]
    portrait_diameter: int
    name_baseline: int
    name_size: int
    organisation_baseline: int
    organisation_size: int
    text_centre_x: int  # name and organisation are centred on this
    wave: Box  # ffmpeg draws the moving waveform here
    captions: Box
    caption_size: int

    @property
    def caption_max_width(self) -> int:
        return self.captions[2] - self.captions[0] - 2 * _CAPTION_PADDING


_CAPTION_PADDING: Final = 28

LAYOUTS: Final = {
    (1080, 1080): CardLayout(
        width=1080, height=1080, band=(0, 0, 1080, 150), notice_size=46, band_detail_size=28,
        portrait_centre=(540, 345), portrait_diameter=300, name_baseline=565, name_size=46,
        organisation_baseline=615, organisation_size=30, text_centre_x=540,
        wave=(120, 650, 960, 790), captions=(40, 810, 1040, 1060), caption_size=42,
    ),
    (1080, 1920): CardLayout(
        width=1080, height=1920, band=(0, 0, 1080, 220), notice_size=58, band_detail_size=36,
        portrait_centre=(540, 620), portrait_diameter=500, name_baseline=975, name_size=60,
        organisation_baseline=1040, organisation_size=38, text_centre_x=540,
        # the bottom ~250 px stay clear: vertical-video apps lay their buttons over it
        wave=(90, 1100, 990, 1300), captions=(30, 1340, 1050, 1670), caption_size=44,
    ),
    (1920, 1080): CardLayout(
        width=1920, height=1080, band=(0, 0, 1920, 130), notice_size=46, band_detail_size=30,
        portrait_centre=(500, 420), portrait_diameter=420, name_baseline=715, name_size=50,
        organisation_baseline=768, organisation_size=32, text_centre_x=500,
        wave=(940, 300, 1800, 560), captions=(160, 820, 1760, 1060), caption_size=50,
    ),
}


def layout_for(width: int, height: int) -> CardLayout:
    """The layout for a frame size; InputError for a size we have not designed."""
    try:
        return LAYOUTS[(width, height)]
    except KeyError:
        sizes = ", ".join(f"{w}x{h}" for w, h in LAYOUTS)
        raise InputError(f"No card layout for {width}x{height}; use one of {sizes}.") from None


def label_notice(lang: str) -> str:
    """The visible "AI-generated voice" in `lang`, English where we have no translation."""
    return AI_VOICE_LABELS.get(_primary(lang), AI_VOICE_LABELS["en"])


def find_portrait(voice_dir: Path) -> Path | None:
    """The voice profile's portrait (``portrait.png``/``.jpg``/``.webp``), or None for a generated card."""
    return next((voice_dir / name for name in PORTRAIT_NAMES if (voice_dir / name).is_file()), None)


def render_card(layout: CardLayout, labels: ClipLabels, portrait: Path | None = None) -> Image.Image:
    """The static frame: background, label band, portrait (or initials) with name and organisation."""
    image = _background(layout.width, layout.height)
    draw = ImageDraw.Draw(image)
    _draw_label_band(draw, layout, labels)
    disc = _portrait_disc(portrait, layout.portrait_diameter) if portrait else _initials_disc(labels, layout)
    cx, cy = layout.portrait_centre
    radius = layout.portrait_diameter // 2
    ring = max(4, layout.portrait_diameter // 60)
    draw.ellipse((cx - radius - ring, cy - radius - ring, cx + radius + ring, cy + radius + ring), fill=NAME_COLOUR)
    image.paste(disc, (cx - radius, cy - radius), disc)
    draw_line(draw, labels.voice_name, centre_x=layout.text_centre_x, baseline=layout.name_baseline,
              size=layout.name_size, bold=True, lang=labels.language, fill=NAME_COLOUR,
              max_width=layout.width - 80)
    draw_line(draw, labels.organisation, centre_x=layout.text_centre_x, baseline=layout.organisation_baseline,
              size=layout.organisation_size, bold=False, lang=labels.language, fill=ORGANISATION_COLOUR,
              max_width=layout.width - 80)
    return image


def render_caption_strip(card: Image.Image, layout: CardLayout, caption: Caption | None, lang: str) -> Image.Image:
    """The caption area of `card` with `caption` drawn on a dark box (None: the bare area)."""
    strip = card.crop(layout.captions).convert("RGBA")
    if caption is None:
        return strip.convert("RGB")
    lines = list(caption.lines)
    size, pitch = _fit_caption(lines, layout, lang)
    width, height = strip.size
    block = pitch * len(lines)
    widest = max(measure_line(line, size=size, bold=False, lang=lang) for line in lines)
    box_w, box_h = min(width, widest + 2 * _CAPTION_PADDING), min(height, block + _CAPTION_PADDING)
    overlay = Image.new("RGBA", strip.size, (0, 0, 0, 0))
    shade = ImageDraw.Draw(overlay)
    top = (height - box_h) // 2
    shade.rounded_rectangle(((width - box_w) // 2, top, (width + box_w) // 2, top + box_h), radius=18,
                            fill=(0, 0, 0, CAPTION_BOX_ALPHA))
    strip = Image.alpha_composite(strip, overlay).convert("RGB")
    draw = ImageDraw.Draw(strip)
    first_baseline = (height - block) // 2 + _line_ascent(size, lang)
    for number, line in enumerate(lines):
        draw_line(draw, line, centre_x=width // 2, baseline=first_baseline + number * pitch, size=size,
                  bold=False, lang=lang, fill=CAPTION_TEXT_COLOUR, rtl=caption.rtl)
    return strip


# --- text ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    text: str
    font: ImageFont.FreeTypeFont
    direction: str  # "ltr" or "rtl"
    language: str | None
    width: float


def draw_line(
    draw: ImageDraw.ImageDraw, text: str, *, centre_x: int, baseline: int, size: int, bold: bool, lang: str,
    fill: Colour, rtl: bool | None = None, max_width: int | None = None,
) -> int:
    """Draw one line centred on `centre_x` with its baseline at `baseline`; return its width.

    `rtl` is the line's base direction (default: from its first strong
    character). With `max_width`, the font shrinks until the line fits.
    """
    while True:
        runs = _layout(text, size=size, bold=bold, lang=lang, rtl=rtl)
        width = round(sum(run.width for run in runs))
        if max_width is None or width <= max_width or size <= MIN_FONT_SIZE:
            break
        size -= 2
    x = centre_x - width / 2
    for run in runs:
        kwargs = {"direction": run.direction, "language": run.language} if _raqm() else {}
        draw.text((x, baseline), run.text, font=run.font, fill=fill, anchor="ls", **kwargs)
        x += run.width
    return width


def measure_line(text: str, *, size: int, bold: bool, lang: str) -> int:
    """Width in pixels of `text` as `draw_line` would draw it."""
    return round(sum(run.width for run in _layout(text, size=size, bold=bold, lang=lang, rtl=None)))


def _layout(text: str, *, size: int, bold: bool, lang: str, rtl: bool | None) -> list[_Run]:
    """Runs in visual order (left to right), each with its font, direction and advance width."""
    latin, arabic = _font(LATIN_FONT[1 if bold else 0], size), _arabic_font(lang, size, bold)
    logical = _runs(text, rtl)
    base_rtl = rtl if rtl is not None else _first_strong_is_rtl(text)
    out: list[list[_Run]] = []
    for chunk, chunk_rtl in logical:
        preferred = (arabic, latin) if chunk_rtl else (latin, arabic)
        pieces = _split_by_font(chunk, preferred)
        if chunk_rtl and not _raqm():
            raise ProvenanceError(
                "Pillow cannot shape right-to-left text here (no libraqm), so Arabic-script captions and labels "
                "would be drawn unjoined; install the Debian packages libraqm0 and libfribidi0, then re-export."
            )
        runs = [_Run(piece, font, "rtl" if chunk_rtl else "ltr", _raqm_language(lang, font, arabic),
                     _advance(piece, font, "rtl" if chunk_rtl else "ltr")) for piece, font in pieces]
        out.append(runs[::-1] if chunk_rtl else runs)
    ordered = out[::-1] if base_rtl else out
    return [run for group in ordered for run in group]


def _runs(text: str, rtl: bool | None) -> list[tuple[str, bool]]:
    """Split a line into directional runs (text, is_rtl) in logical order; neutrals resolved."""
    classes = [_bidi_class(ch) for ch in text]
    base = rtl if rtl is not None else _first_strong_is_rtl(text)
    resolved: list[bool | None] = list(classes)
    for i, value in enumerate(classes):
        if value is not None:
            continue
        before = next((c for c in reversed(classes[:i]) if c is not None), None)
        after = next((c for c in classes[i + 1 :] if c is not None), None)
        resolved[i] = before if before is not None and before == after else base
    runs: list[tuple[str, bool]] = []
    for ch, direction in zip(text, resolved):
        assert direction is not None
        if runs and runs[-1][1] == direction:
            runs[-1] = (runs[-1][0] + ch, direction)
        else:
            runs.append((ch, direction))
    return runs


def _bidi_class(ch: str) -> bool | None:
    """True for right-to-left strong, False for left-to-right strong (numbers too), None for neutral."""
    kind = unicodedata.bidirectional(ch)
    if kind in ("R", "AL", "AN"):
        return True
    if kind in ("L", "EN"):
        return False
    return None


def _first_strong_is_rtl(text: str) -> bool:
    return next((c for c in map(_bidi_class, text) if c is not None), False)


def _split_by_font(text: str, fonts: tuple[ImageFont.FreeTypeFont, ...]) -> list[tuple[str, ImageFont.FreeTypeFont]]:
    pieces: list[tuple[str, ImageFont.FreeTypeFont]] = []
    for ch in text:
        font = next((f for f in fonts if _has_glyph(f, ch)), None)
        if font is None:
            raise InputError(
                f"No installed font can draw {ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, '?')}); "
                f"captions and labels can use Latin and Arabic script. Install {FONT_PACKAGE} "
                "or remove the character from the text."
            )
        if pieces and (pieces[-1][1] is font or ch.isspace() or unicodedata.category(ch).startswith("M")):
            pieces[-1] = (pieces[-1][0] + ch, pieces[-1][1])
        else:
            pieces.append((ch, font))
    return pieces


def _has_glyph(font: ImageFont.FreeTypeFont, ch: str) -> bool:
    """Whether `font` maps `ch` to a real glyph (Pillow has no cmap API: compare with .notdef)."""
    if ch.isspace() or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return True
    return _glyph_signature(font.path, ch) != _glyph_signature(font.path, "\U0010fffd")


@functools.lru_cache(maxsize=4096)
def _glyph_signature(path: str, ch: str) -> tuple[tuple[int, int, int, int], bytes]:
    font = _font_from_path(path, 64)
    mask = font.getmask(ch, mode="L")
    return font.getbbox(ch), bytes(mask)


def _advance(text: str, font: ImageFont.FreeTypeFont, direction: str) -> float:
    if _raqm():
        return font.getlength(text, direction=direction)
    return font.getlength(text)


def _raqm_language(lang: str, font: ImageFont.FreeTypeFont, arabic: ImageFont.FreeTypeFont) -> str | None:
    # Urdu glyph variants (Urdu digits, heh goal...) need the language tag; Latin runs do not.
    return _primary(lang) if font is arabic and _raqm() else None


def _fit_caption(lines: list[str], layout: CardLayout, lang: str) -> tuple[int, int]:
    """Largest font size (and line pitch) at which every line fits the caption strip."""
    size = layout.caption_size
    height = layout.captions[3] - layout.captions[1] - _CAPTION_PADDING
    while size > MIN_FONT_SIZE:
        pitch = _line_height(size, lang)
        widest = max(measure_line(line, size=size, bold=False, lang=lang) for line in lines)
        if widest <= layout.caption_max_width and pitch * len(lines) <= height:
            return size, pitch
        size -= 2
    return MIN_FONT_SIZE, _line_height(MIN_FONT_SIZE, lang)


def _line_height(size: int, lang: str) -> int:
    font = _arabic_font(lang, size, False) if is_rtl(lang) else _font(LATIN_FONT[0], size)
    ascent, descent = font.getmetrics()
    # Nastaliq's metrics allow for its tallest stacks, which captions rarely hold.
    return round((ascent + descent) * (0.8 if _primary(lang) in ARABIC_FONT_BY_LANGUAGE else 1.15))


def _line_ascent(size: int, lang: str) -> int:
    font = _arabic_font(lang, size, False) if is_rtl(lang) else _font(LATIN_FONT[0], size)
    ascent, descent = font.getmetrics()
    return round(ascent * (0.8 if _primary(lang) in ARABIC_FONT_BY_LANGUAGE else 1.0))


def _arabic_font(lang: str, size: int, bold: bool) -> ImageFont.FreeTypeFont:
    names = ARABIC_FONT_BY_LANGUAGE.get(_primary(lang), ARABIC_FONT)
    scale = NASTALIQ_SCALE if names is ARABIC_FONT_BY_LANGUAGE.get("ur") else 1.0
    return _font(names[1 if bold else 0], round(size * scale))


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return _font_from_path(str(find_font(name)), size)


@functools.lru_cache(maxsize=64)
def _font_from_path(path: str, size: int) -> ImageFont.FreeTypeFont:
    engine = ImageFont.Layout.RAQM if _raqm() else ImageFont.Layout.BASIC
    return ImageFont.truetype(path, size, layout_engine=engine)


@functools.lru_cache(maxsize=16)
def find_font(name: str) -> Path:
    """The installed font file `name`; ProvenanceError naming the Debian package if it is missing."""
    for folder in FONT_DIRS:
        found = next(iter(sorted(folder.rglob(name))), None) if folder.is_dir() else None
        if found is not None:
            return found
    raise ProvenanceError(
        f"Font {name} is not installed, so the AI label and captions cannot be drawn; "
        f"install the Debian package {FONT_PACKAGE} (`make setup`)."
    )


@functools.cache
def _raqm() -> bool:
    return bool(features.check("raqm"))


# --- pictures ------------------------------------------------------------------------


def _background(width: int, height: int) -> Image.Image:
    """A quiet vertical gradient: enough depth to look finished, cheap for x264 to hold still."""
    column = Image.linear_gradient("L").resize((1, height))
    top, bottom = Image.new("RGB", (1, height), BACKGROUND_TOP), Image.new("RGB", (1, height), BACKGROUND_BOTTOM)
    return Image.composite(bottom, top, column).resize((width, height), Image.Resampling.NEAREST)


def _draw_label_band(draw: ImageDraw.ImageDraw, layout: CardLayout, labels: ClipLabels) -> None:
    """The permanent label: "AI-generated voice" in the clip's language, then the organisation.

    For other languages than English, the second line says it in English too,
    so platform moderators and foreign newsrooms can read it.
    """
    left, top, right, bottom = layout.band
    draw.rectangle(layout.band, fill=LABEL_BAND_COLOUR)
    notice = label_notice(labels.language)
    detail = labels.organisation
    if notice != AI_VOICE_LABELS["en"]:
        detail = f"{AI_VOICE_LABELS['en']} · {labels.organisation}"
    width, room = right - left - 60, (bottom - top) * 9 // 10
    gap = layout.band_detail_size // 3
    scale = 1.0
    while True:  # shrink both lines together until they fit the band (Nastaliq stands tall)
        lines = [(notice, round(layout.notice_size * scale), True),
                 (detail, round(layout.band_detail_size * scale), False)]
        fitted = [(text, _fitted_size(text, size, bold, labels.language, width), bold) for text, size, bold in lines]
        extents = [ink_extent(text, size=size, bold=bold, lang=labels.language) for text, size, bold in fitted]
        block = sum(below - above for above, below in extents) + gap * (len(lines) - 1)
        if block <= room or scale < 0.5:
            break
        scale *= 0.95
    y = top + (bottom - top - block) // 2
    for (text, size, bold), (above, below) in zip(fitted, extents):
        draw_line(draw, text, centre_x=(left + right) // 2, baseline=y - above, size=size, bold=bold,
                  lang=labels.language, fill=LABEL_TEXT_COLOUR)
        y += below - above + gap


def _fitted_size(text: str, size: int, bold: bool, lang: str, max_width: int) -> int:
    while size > MIN_FONT_SIZE and measure_line(text, size=size, bold=bold, lang=lang) > max_width:
        size -= 2
    return size


def ink_extent(text: str, *, size: int, bold: bool, lang: str) -> tuple[int, int]:
    """How far the ink of a line reaches above (negative) and below its baseline, in pixels."""
    runs = _layout(text, size=size, bold=bold, lang=lang, rtl=None)
    boxes = [run.font.getbbox(run.text, anchor="ls", **({"direction": run.direction} if _raqm() else {}))
             for run in runs if run.text.strip()]
    if not boxes:
        return 0, 0
    return min(box[1] for box in boxes), max(box[3] for box in boxes)


def _portrait_disc(path: Path, diameter: int) -> Image.Image:
    """The portrait cropped to a centred square and masked to a disc; InputError if it cannot be read."""
    try:
        with Image.open(path) as source:
            if source.width * source.height > MAX_PORTRAIT_PIXELS:  # checked before decoding a single pixel
                raise InputError(
                    f"The voice portrait {path} is {source.width}x{source.height} pixels; "
                    "scale it down (1000x1000 is plenty) and export again."
                )
            picture = ImageOps.exif_transpose(source).convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        raise InputError(f"The voice portrait {path} cannot be read ({exc}); replace it with a PNG or JPEG.") from exc
    picture = ImageOps.fit(picture, (diameter, diameter), Image.Resampling.LANCZOS, centering=(0.5, 0.4))
    return _masked_disc(picture)


def _initials_disc(labels: ClipLabels, layout: CardLayout) -> Image.Image:
    """A coloured disc with the voice's initials, for voices without a portrait."""
    diameter = layout.portrait_diameter
    colour = CARD_PALETTE[hashlib.sha256(labels.voice_id.encode()).digest()[0] % len(CARD_PALETTE)]
    disc = Image.new("RGB", (diameter, diameter), colour)
    text = initials(labels.voice_name)
    size = _fitted_size(text, diameter * 2 // 5, True, labels.language, diameter * 3 // 5)
    above, below = ink_extent(text, size=size, bold=True, lang=labels.language)
    draw_line(ImageDraw.Draw(disc), text, centre_x=diameter // 2, baseline=(diameter - above - below) // 2,
              size=size, bold=True, lang=labels.language, fill=NAME_COLOUR)
    return _masked_disc(disc)


def initials(name: str) -> str:
    """Initials from a display name, ignoring any bracketed note: "Joe Example (demo)" -> "JE".

    Arabic-script names give one letter: two would join into a new word.
    """
    words = [w for w in name.split("(")[0].split() if any(ch.isalpha() for ch in w)]
    letters = [next(ch for ch in w if ch.isalpha()) for w in words[:2]]
    if letters and _bidi_class(letters[0]):
        letters = letters[:1]
    return "".join(letters).upper() or "?"


def _masked_disc(square: Image.Image) -> Image.Image:
    # Drawn at 4x and scaled down: Pillow's ellipse has no antialiasing of its own.
    size = square.size[0]
    mask = Image.new("L", (size * 4, size * 4), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, size * 4 - 1, size * 4 - 1), fill=255)
    disc = square.convert("RGBA")
    disc.putalpha(mask.resize((size, size), Image.Resampling.LANCZOS))
    return disc


def _primary(lang: str) -> str:
    return lang.replace("_", "-").split("-", 1)[0].strip().lower()
