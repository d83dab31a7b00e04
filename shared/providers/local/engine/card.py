"""``local-card``: the prompt set as a designed title card. An offline image model, and not AI.

Nothing is generated from the prompt's meaning: its words are typeset. The card is a diagonal two-colour
gradient with a soft glow (colours picked deterministically from a hash of the prompt and seed, dark or
light theme), a short accent rule, and the prompt centred in DejaVu Sans Bold, or an installed CJK font
when the prompt needs one (see :data:`FONT_PATHS`; Pillow's bundled font when none is installed).
Characters no installed font has are drawn as the font's missing-glyph box. The text is wrapped into balanced lines (lines of similar width,
not a greedy fill), at the largest size that fits inside the margins; a prompt too long for the smallest
size is cut at a word and ends with an ellipsis. Text and background keep a WCAG contrast ratio of at
least :data:`MIN_CONTRAST`.
"""

from __future__ import annotations

import colorsys
import hashlib
import os
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from shared.providers.local.engine.layout import fit_lines

#: Width:height of each aspect ratio the card accepts; "auto" is square.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "21:9": (21, 9),
    "auto": (1, 1),
}
MIN_LONG_SIDE, MAX_LONG_SIDE = 64, 4096
#: The lowest WCAG contrast ratio between the text and any part of the background.
MIN_CONTRAST = 7.0
JPEG_QUALITY = 92

#: Fonts tried in order (those installed); a prompt gets the first that has a glyph for every character,
#: else the one that has the most. DejaVu covers Latin, Greek, Cyrillic, Arabic and Hebrew; the CJK fonts
#: are used where a system has them.
FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
_MISSING = "\U0010fffd"  # a private-use code point no font draws: its glyph is the font's "missing" box
_MARGIN = 0.09  # of each side
_MAX_TEXT = (0.2, 0.1)  # largest font size: at most this fraction of the short side and of the long side
_MIN_TEXT = 0.035  # smallest font size before the prompt is cut
_LEADING = 1.22  # line height / font size

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class CardResult:
    """What :func:`render_card` wrote: pixel size, file format, the lines as set and their font size."""

    width: int
    height: int
    format: Literal["png", "jpeg"]
    lines: tuple[str, ...]
    font_size: int


@dataclass(frozen=True)
class Palette:
    """Gradient ends, the glow's centre, accent and text colour (sRGB, 0..1), and whether the card is dark."""

    start: RGB
    end: RGB
    glow: RGB
    accent: RGB
    text: RGB
    dark: bool


def card_size(aspect_ratio: str, long_side: int = 1024) -> tuple[int, int]:
    """``(width, height)`` of a card: the longer side is ``long_side``, the other follows the ratio."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}; got {aspect_ratio!r}")
    if isinstance(long_side, bool) or not isinstance(long_side, int):
        raise ValueError(f"long_side must be a whole number of pixels; got {long_side!r}")
    if not MIN_LONG_SIDE <= long_side <= MAX_LONG_SIDE:
        raise ValueError(f"long_side must be {MIN_LONG_SIDE}..{MAX_LONG_SIDE}; got {long_side}")
    a, b = ASPECT_RATIOS[aspect_ratio]
    if a >= b:
        return long_side, max(1, round(long_side * b / a))
    return max(1, round(long_side * a / b)), long_side


def render_card(
    prompt: str,
    *,
    aspect_ratio: str,
    output_format: str,
    out_path: Path,
    long_side: int = 1024,
    seed: int | None = None,
) -> CardResult:
    """Typeset ``prompt`` as a title card and write it to ``out_path`` (atomically) as PNG or JPEG.

    Deterministic for the same arguments. ``seed`` varies the colours; without one they follow the
    prompt alone. An empty prompt gives the background and accent with no text. Raises ``ValueError`` for
    an unknown aspect ratio or format, or a ``long_side`` outside 64..4096.
    """
    formats: dict[str, Literal["png", "jpeg"]] = {"png": "png", "jpeg": "jpeg"}
    if output_format not in formats:
        raise ValueError(f"output_format must be png or jpeg; got {output_format!r}")
    fmt = formats[output_format]
    width, height = card_size(aspect_ratio, long_side)
    text = " ".join(prompt.split())
    digest = _digest(text, seed)
    palette = _palette(digest)
    image = _background(width, height, palette, digest)
    _, rule_h, gap = _rule(width, height)
    box = (width * (1 - 2 * _MARGIN), height * (1 - 2 * _MARGIN) - rule_h - gap)
    short = min(width, height)
    largest = min(short * _MAX_TEXT[0], max(width, height) * _MAX_TEXT[1])
    sizes = (max(8, round(short * _MIN_TEXT)), max(9, round(largest)))
    font_path = choose_font(text)

    def measure(line: str, size: int) -> float:
        return _font(font_path, size).getlength(line)

    lines, size = fit_lines(text, box, sizes, measure, _LEADING)
    _draw_text(image, lines, _font(font_path, size) if lines else None, palette)
    _save(image, Path(out_path), fmt)
    return CardResult(width, height, fmt, lines, size)


# --- colour ----------------------------------------------------------------------------------------------


def _luminance(rgb: RGB) -> float:
    """WCAG relative luminance of an sRGB colour."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: RGB, b: RGB) -> float:
    """WCAG contrast ratio of two sRGB colours (1..21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _digest(text: str, seed: int | None) -> bytes:
    """The hash every design choice is read from."""
    return hashlib.sha256(f"{seed}\x00{text}".encode()).digest()


def palette(prompt: str, seed: int | None = None) -> Palette:
    """The colours :func:`render_card` uses for ``prompt`` and ``seed``."""
    return _palette(_digest(" ".join(prompt.split()), seed))


def _palette(digest: bytes) -> Palette:
    """Colours from the hash: two analogous hues, muted, dark (3 in 4 cards) or light, text to match.

    Lightness in HLS is not perceived lightness (a green at 0.3 is far brighter than a blue), so each
    background colour is then darkened (or, on light cards, lightened) until it meets the contrast floor.
    """
    hue = digest[0] / 256
    shift = (0.06 + digest[1] / 255 * 0.12) * (1 if digest[2] & 1 else -1)
    saturation = 0.45 + digest[3] / 255 * 0.3
    dark = digest[4] % 4 != 0
    lightness = (0.16, 0.30) if dark else (0.90, 0.80)
    text = colorsys.hls_to_rgb(hue, 0.96 if dark else 0.12, 0.25)
    start = _against(colorsys.hls_to_rgb(hue, lightness[0], saturation), text, dark)
    end = _against(colorsys.hls_to_rgb((hue + shift) % 1.0, lightness[1], saturation), text, dark)
    lift = 0.12 if dark else 0.0  # the glow brightens dark cards a little
    glow = _against(_mix(end, (1.0, 1.0, 1.0), lift), text, dark)
    accent = colorsys.hls_to_rgb((hue + 2 * shift) % 1.0, 0.68 if dark else 0.42, 0.75)
    return Palette(start, end, glow, accent, text, dark)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """``a`` moved a fraction ``t`` of the way to ``b``."""
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _against(background: RGB, text: RGB, dark: bool) -> RGB:
    """``background`` darkened (dark cards) or lightened until ``text`` on it reaches :data:`MIN_CONTRAST`."""
    target = (0.0, 0.0, 0.0) if dark else (1.0, 1.0, 1.0)
    for _ in range(60):
        if contrast(text, background) >= MIN_CONTRAST:
            break
        background = _mix(background, target, 0.08)
    return background


def _background(width: int, height: int, palette: Palette, digest: bytes) -> Image.Image:
    """Diagonal gradient between the palette's ends, a soft off-centre glow, dithered against banding."""
    angle = digest[5] / 256 * 2 * np.pi
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (xs + 0.5) / width - 0.5, (ys + 0.5) / height - 0.5
    t = np.clip((u * np.cos(angle) + v * np.sin(angle)) / 0.75 + 0.5, 0.0, 1.0)
    t = t * t * (3 - 2 * t)
    start, end = np.array(palette.start, np.float32), np.array(palette.end, np.float32)
    rgb = start + (end - start) * t[..., None]
    gx, gy = (digest[6] / 255 - 0.5) * 0.5, (digest[7] / 255 - 0.5) * 0.5
    glow = np.exp(-((u - gx) ** 2 + (v - gy) ** 2) / 0.08)[..., None]
    rgb = rgb + (np.array(palette.glow, np.float32) - rgb) * glow * 0.8
    noise = np.random.default_rng(int.from_bytes(digest[8:16], "big")).random(rgb.shape, np.float32)
    pixels: npt.NDArray[np.uint8] = np.clip(rgb * 255 + noise - 0.5, 0, 255).round().astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


# --- text ------------------------------------------------------------------------------------------------


@cache
def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    """The font at ``path`` (None: Pillow's bundled scalable font) at ``size`` px."""
    if path is not None:
        return ImageFont.truetype(path, size)
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("the card needs FreeType support in Pillow for a scalable font")
    return font


def _glyph_image(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    """``char`` drawn alone in ``font``, as raw pixels."""
    image = Image.new("L", (64, 64))
    ImageDraw.Draw(image).text((8, 8), char, font=font, fill=255)
    return image.tobytes()


@cache
def _has_glyph(path: str | None, char: str) -> bool:
    """Whether the font at ``path`` draws ``char`` as something other than its missing-glyph box."""
    font = _font(path, 32)
    return _glyph_image(font, char) != _glyph_image(font, _MISSING)


def choose_font(text: str) -> str | None:
    """Path of the installed font that covers most of ``text`` (the first listed on ties), or None."""
    installed = [path for path in FONT_PATHS if os.path.exists(path)]
    if not installed:
        return None
    chars = {c for c in text if not c.isspace()}
    covered = [sum(_has_glyph(path, c) for c in chars) for path in installed]
    return installed[covered.index(max(covered))]


def _to8(rgb: RGB, alpha: int | None = None) -> tuple[int, ...]:
    """A 0..1 colour as 0..255 integers, with an alpha if given."""
    values = tuple(round(c * 255) for c in rgb)
    return (*values, alpha) if alpha is not None else values


def _rule(width: int, height: int) -> tuple[int, int, int]:
    """The accent rule's width, thickness and the gap below it, in px."""
    short = min(width, height)
    thickness = max(2, round(short * 0.008))
    return round(short * 0.09), thickness, max(3 * thickness, round(short * 0.035))


def _draw_text(
    image: Image.Image, lines: tuple[str, ...], font: ImageFont.FreeTypeFont | None, palette: Palette
) -> None:
    """The accent rule and the centred lines below it, with a soft shadow under the text on dark cards."""
    width, height = image.size
    size = int(font.size) if font is not None else 0
    rule_w, rule_h, gap = _rule(width, height)
    line_height = size * _LEADING
    block = rule_h + (gap + line_height * len(lines) if lines else 0)
    top = round((height - block) / 2)
    draw = ImageDraw.Draw(image)
    x0 = (width - rule_w) // 2
    draw.rectangle((x0, top, x0 + rule_w - 1, top + rule_h - 1), fill=_to8(palette.accent))
    if not lines or font is None:
        return
    first = top + rule_h + gap + line_height / 2
    positions = [(width / 2, first + k * line_height) for k in range(len(lines))]
    if palette.dark:
        shadow = Image.new("RGBA", image.size, (0, 0, 0, 0))
        shadow_draw = ImageDraw.Draw(shadow)
        offset = max(1, round(size * 0.04))
        for (x, y), line in zip(positions, lines, strict=True):
            shadow_draw.text((x, y + offset), line, font=font, fill=(0, 0, 0, 110), anchor="mm")
        blurred = shadow.filter(ImageFilter.GaussianBlur(max(1.0, size * 0.06)))
        image.paste(blurred, (0, 0), blurred)
    for (x, y), line in zip(positions, lines, strict=True):
        draw.text((x, y), line, font=font, fill=_to8(palette.text), anchor="mm")


def _save(image: Image.Image, path: Path, output_format: Literal["png", "jpeg"]) -> None:
    """Write ``image`` to ``path`` through a hidden temporary file next to it, so it appears atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if output_format == "png":
            image.save(tmp, format="PNG", optimize=False)
        else:
            image.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
