"""Balanced line breaking for the title card: the largest font size at which a text fits a box.

Lines break at spaces, and between any two East Asian wide characters (CJK text has no spaces). A word
is split between characters only when it is wider than the box even at the smallest size. At each size the fewest lines the text needs are found
greedily, then the breaks are chosen to make those lines as equal in width as possible (least squared
slack, a small dynamic programme), so a title never ends in one stranded word. The largest size whose
balanced lines fit both dimensions wins; when not even the smallest fits, the text is filled line by line
and cut with an ellipsis.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

#: Width in px of a string at a font size.
Measure = Callable[[str, int], float]
ELLIPSIS = "…"


@dataclass(frozen=True)
class _Token:
    """An unbreakable piece of text and the separator before it when it follows another on a line."""

    text: str
    glue: str


def _wide(char: str) -> bool:
    """True for East Asian wide/fullwidth characters, between which lines may break."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def tokenize(text: str) -> list[_Token]:
    """Words separated by spaces (glue " "), with runs of wide characters split one per token (glue "")."""
    tokens: list[_Token] = []
    for word in text.split():
        glue, piece = " ", ""
        for char in word:
            if _wide(char) or (piece and _wide(piece[-1])):
                if piece:
                    tokens.append(_Token(piece, glue))
                    glue = ""
                piece = char
            else:
                piece += char
        if piece:
            tokens.append(_Token(piece, glue))
    return tokens


def _split_wide_tokens(tokens: list[_Token], max_w: float, size: int, measure: Measure) -> list[_Token]:
    """Tokens wider than ``max_w`` cut between characters into pieces that fit (greedily)."""
    out: list[_Token] = []
    for token in tokens:
        if measure(token.text, size) <= max_w:
            out.append(token)
            continue
        glue, piece = token.glue, ""
        for char in token.text:
            if piece and measure(piece + char, size) > max_w:
                out.append(_Token(piece, glue))
                glue, piece = "", ""
            piece += char
        out.append(_Token(piece, glue))
    return out


def _join(tokens: list[_Token]) -> str:
    """One line of text from consecutive tokens (the first token's glue is dropped)."""
    return tokens[0].text + "".join(t.glue + t.text for t in tokens[1:]) if tokens else ""


def _greedy(widths: list[float], glues: list[float], max_w: float) -> list[int]:
    """Start indices of lines filled greedily (the fewest lines possible)."""
    starts, width = [0], 0.0
    for i, w in enumerate(widths):
        if i == 0:
            width = w
        elif width + glues[i] + w > max_w:
            starts.append(i)
            width = w
        else:
            width += glues[i] + w
    return starts


def _balanced(widths: list[float], glues: list[float], max_w: float, lines: int) -> list[int]:
    """Start indices of exactly ``lines`` lines minimising the sum of squared slack."""
    n = len(widths)
    prefix = [0.0]
    for w, g in zip(widths, glues, strict=True):
        prefix.append(prefix[-1] + g + w)
    inf = float("inf")
    cost = [[inf] * (n + 1) for _ in range(lines + 1)]
    back = [[0] * (n + 1) for _ in range(lines + 1)]
    cost[0][0] = 0.0
    for k in range(1, lines + 1):
        for j in range(1, n + 1):
            for i in range(j - 1, -1, -1):  # line k holds tokens i..j-1
                width = prefix[j] - prefix[i] - glues[i]
                if width > max_w:
                    break
                total = cost[k - 1][i] + (max_w - width) ** 2
                if total < cost[k][j]:
                    cost[k][j], back[k][j] = total, i
    starts, j = [], n
    for k in range(lines, 0, -1):
        j = back[k][j]
        starts.append(j)
    return starts[::-1]


def wrap(
    tokens: list[_Token], max_w: float, size: int, measure: Measure, max_lines: int, *, split: bool = False
) -> tuple[str, ...] | None:
    """Balanced lines for ``tokens`` at font ``size`` within ``max_w``; None when more than ``max_lines``
    are needed, or (unless ``split``) when a word is wider than ``max_w``.
    """
    if split:
        pieces = _split_wide_tokens(tokens, max_w, size, measure)
    elif any(measure(t.text, size) > max_w for t in tokens):
        return None
    else:
        pieces = tokens
    widths = [measure(t.text, size) for t in pieces]
    space = measure(" ", size)
    glues = [space if t.glue == " " else 0.0 for t in pieces]
    count = len(_greedy(widths, glues, max_w))
    if count > max_lines:
        return None
    starts = _balanced(widths, glues, max_w, count)
    lines = tuple(_join(pieces[a:b]) for a, b in zip(starts, [*starts[1:], len(pieces)], strict=True))
    if any(measure(line, size) > max_w for line in lines):  # kerning can widen a joined line
        return None
    return lines


def truncate(
    tokens: list[_Token], max_w: float, size: int, measure: Measure, max_lines: int
) -> tuple[str, ...]:
    """As many lines as fit, filled greedily, the last one ending in an ellipsis."""
    if max_lines < 1:
        return ()
    pieces = _split_wide_tokens(tokens, max_w, size, measure)
    lines: list[list[_Token]] = [[]]
    for token in pieces:
        if lines[-1] and measure(_join([*lines[-1], token]), size) > max_w:
            if len(lines) == max_lines:
                break
            lines.append([])
        lines[-1].append(token)
    last = lines[-1]
    while last and measure(_join(last) + ELLIPSIS, size) > max_w:
        last.pop()
    lines[-1] = [*last, _Token(ELLIPSIS, "")] if last else [_Token(ELLIPSIS, "")]
    return tuple(_join(line) for line in lines)


def fit_lines(
    text: str, box: tuple[float, float], sizes: tuple[int, int], measure: Measure, leading: float
) -> tuple[tuple[str, ...], int]:
    """The lines and font size for ``text`` in ``box`` (width, height): the largest size in ``sizes``
    (smallest, largest) at which balanced lines fit, else the smallest size with the text cut short.
    """
    tokens = tokenize(text)
    if not tokens:
        return (), 0
    max_w, max_h = box
    for split in (False, True):  # break inside words only when no size fits whole words
        best: tuple[tuple[str, ...], int] | None = None
        lo, hi = sizes
        while lo <= hi:
            size = (lo + hi) // 2
            lines = wrap(tokens, max_w, size, measure, int(max_h // (size * leading)), split=split)
            if lines:
                best, lo = (lines, size), size + 1
            else:
                hi = size - 1
        if best is not None:
            return best
    size = sizes[0]
    return truncate(tokens, max_w, size, measure, int(max_h // (size * leading))), size
