"""The local-card image model: a prompt typeset as a title card, and its balanced line breaking."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from PIL import Image, ImageFilter

from shared.providers.local.engine.card import (
    MIN_CONTRAST,
    CardResult,
    card_size,
    contrast,
    palette,
    render_card,
)
from shared.providers.local.engine.layout import ELLIPSIS, fit_lines, tokenize

PROMPT = "A lighthouse on a cliff at dusk, waves crashing on the rocks below while gulls circle overhead"
LONG = " ".join(f"word{i} and some filler text" for i in range(400))


def _card(
    tmp_path: Path,
    prompt: str = PROMPT,
    aspect_ratio: str = "16:9",
    output_format: Literal["png", "jpeg"] = "png",
    **kwargs: object,
) -> tuple[CardResult, Path]:
    """Render a card into ``tmp_path``."""
    out = tmp_path / f"card.{output_format}"
    result = render_card(
        prompt, aspect_ratio=aspect_ratio, output_format=output_format, out_path=out, **kwargs
    )  # type: ignore[arg-type]
    return result, out


def _ink(path: Path) -> np.ndarray:
    """Per-pixel strength of sharp detail (text, the accent rule): distance from a smoothed copy."""
    with Image.open(path) as image:
        gray = image.convert("L")
    smooth = gray.filter(ImageFilter.BoxBlur(12))
    return np.abs(np.asarray(gray, np.int16) - np.asarray(smooth, np.int16))


def _fixed_width(text: str, size: int) -> float:
    """A measuring function for layout tests: every character is 0.5 em wide."""
    return len(text) * size * 0.5


@pytest.mark.parametrize(
    ("aspect_ratio", "size"),
    [
        ("1:1", (1024, 1024)),
        ("16:9", (1024, 576)),
        ("9:16", (576, 1024)),
        ("4:3", (1024, 768)),
        ("3:4", (768, 1024)),
        ("3:2", (1024, 683)),
        ("2:3", (683, 1024)),
        ("21:9", (1024, 439)),
        ("auto", (1024, 1024)),
    ],
)
def test_each_aspect_ratio_gives_its_dimensions(
    tmp_path: Path, aspect_ratio: str, size: tuple[int, int]
) -> None:
    """Every aspect ratio yields a file of the right size with the long side at long_side ("auto" is square)."""
    result, out = _card(tmp_path, aspect_ratio=aspect_ratio)
    assert (result.width, result.height) == size
    with Image.open(out) as image:
        assert image.size == size


def test_long_side_scales_the_card() -> None:
    """long_side sets the longer dimension; the shorter follows the ratio."""
    assert card_size("16:9", 1920) == (1920, 1080)
    assert card_size("9:16", 512) == (288, 512)


@pytest.mark.parametrize(("output_format", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG")])
def test_output_decodes_in_the_requested_format(
    tmp_path: Path, output_format: Literal["png", "jpeg"], pil_format: str
) -> None:
    """The file decodes as a full RGB PNG or JPEG, and no temporary file is left beside it."""
    result, out = _card(tmp_path, output_format=output_format)
    with Image.open(out) as image:
        image.load()
        assert image.format == pil_format
        assert image.mode == "RGB"
    assert result.format == output_format
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_the_text_is_drawn_inside_the_margins(tmp_path: Path) -> None:
    """Sharp text pixels fill the middle of the card, and none fall within the outer margin."""
    result, out = _card(tmp_path)
    ink = _ink(out) > 40
    h, w = ink.shape
    middle = ink[h // 4 : 3 * h // 4, w // 8 : 7 * w // 8]
    assert middle.mean() > 0.03
    band_x, band_y = round(w * 0.06), round(h * 0.06)
    assert not ink[:band_y].any() and not ink[-band_y:].any()
    assert not ink[:, :band_x].any() and not ink[:, -band_x:].any()
    assert " ".join(result.lines) == PROMPT


def test_lines_are_balanced_not_greedy(tmp_path: Path) -> None:
    """A sentence wraps into lines of similar length: the longest is at most 1.5x the shortest."""
    result, _ = _card(tmp_path, aspect_ratio="1:1")
    assert len(result.lines) >= 3
    lengths = [len(line) for line in result.lines]
    assert max(lengths) / min(lengths) <= 1.5


def test_layout_balances_where_greedy_strands_a_word() -> None:
    """Where a greedy fill would leave one word alone on the last line, the two lines come out even."""
    # 10 px per character: "aaaa bbbb cccc dddd" (190 px) fits 200 px, so a greedy fill strands "eeee".
    lines, size = fit_lines("aaaa bbbb cccc dddd eeee", (200.0, 100.0), (20, 20), _fixed_width, 1.2)
    assert (lines, size) == (("aaaa bbbb cccc", "dddd eeee"), 20)


def test_the_same_prompt_gives_the_same_card(tmp_path: Path) -> None:
    """Rendering twice gives identical bytes; another seed changes the colours, not the text."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    first, a = _card(tmp_path / "a")
    second, b = _card(tmp_path / "b")
    third, c = _card(tmp_path / "c", seed=7)
    assert a.read_bytes() == b.read_bytes()
    assert first == second
    assert third.lines == first.lines
    assert c.read_bytes() != a.read_bytes()


def test_a_long_prompt_is_cut_with_an_ellipsis_and_still_fits(tmp_path: Path) -> None:
    """A prompt far too long for the card ends in an ellipsis at the smallest size, inside the margins."""
    result, out = _card(tmp_path, LONG, aspect_ratio="9:16")
    assert result.lines[-1].endswith(ELLIPSIS)
    assert 3 < len(result.lines) < 60
    assert result.font_size == round(576 * 0.035)
    ink = _ink(out) > 40
    h, w = ink.shape
    assert not ink[:, : round(w * 0.06)].any() and not ink[:, -round(w * 0.06) :].any()
    assert not ink[-round(h * 0.06) :].any()


def test_an_empty_prompt_gives_a_card_without_text(tmp_path: Path) -> None:
    """An empty or blank prompt renders the background and accent only."""
    result, out = _card(tmp_path, "   \n ")
    assert result.lines == ()
    assert result.font_size == 0
    with Image.open(out) as image:
        assert image.size == (1024, 576)


@pytest.mark.parametrize(
    "prompt",
    [
        "Ночной город под дождём, неоновые отражения в лужах",
        "مدينة في الليل تحت المطر",
        "東京の夜景、ネオンが雨に濡れた通りに映る。遠くで電車の音が聞こえる",
        "Ελληνικά γράμματα και emoji 🌊🌅",
    ],
)
def test_non_latin_prompts_render(tmp_path: Path, prompt: str) -> None:
    """Cyrillic, Arabic, Japanese, Greek and emoji prompts render without error and keep every character."""
    result, out = _card(tmp_path, prompt, aspect_ratio="9:16")
    assert result.lines
    assert "".join(result.lines).replace(" ", "") == prompt.replace(" ", "")
    assert (_ink(out) > 40).mean() > 0.01


def test_text_without_spaces_breaks_between_wide_characters() -> None:
    """Japanese text, which has no spaces, is split into one token per character."""
    tokens = tokenize("東京の夜 abc")
    assert [t.text for t in tokens] == ["東", "京", "の", "夜", "abc"]
    assert [t.glue for t in tokens] == [" ", "", "", "", " "]


def test_text_always_contrasts_with_the_background() -> None:
    """Across many prompts and seeds the text colour keeps a WCAG contrast of 7:1 with the gradient."""
    for seed in range(200):
        colours = palette(PROMPT, seed)
        assert contrast(colours.text, colours.start) >= MIN_CONTRAST
        assert contrast(colours.text, colours.end) >= MIN_CONTRAST
        assert contrast(colours.text, colours.glow) >= MIN_CONTRAST


@pytest.mark.parametrize(
    "kwargs",
    [{"aspect_ratio": "5:4"}, {"output_format": "webp"}, {"long_side": 10}, {"long_side": 10_000}],
)
def test_bad_options_raise_value_error(tmp_path: Path, kwargs: dict[str, object]) -> None:
    """Unknown aspect ratios or formats and out-of-range sizes raise ValueError and write nothing."""
    with pytest.raises(ValueError, match="must be"):
        _card(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_words_shrink_the_text_before_they_are_split() -> None:
    """A word too wide at the largest size lowers the size; only a word too wide at any size is split."""
    lines, size = fit_lines("a remarkably long word", (200.0, 200.0), (10, 40), _fixed_width, 1.2)
    assert "remarkably" in lines or any("remarkably" in line.split() for line in lines)
    assert size * 0.5 * len("remarkably") <= 200
    lines, size = fit_lines("x" * 50, (200.0, 200.0), (10, 40), _fixed_width, 1.2)
    assert len(lines) > 1 and "".join(lines) == "x" * 50
    assert all(_fixed_width(line, size) <= 200 for line in lines)
