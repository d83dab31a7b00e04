"""Generate the sample images in this folder: procedural, deterministic, no third-party content.

Run ``python examples/make_samples.py``; it rewrites ``landscape.jpg`` (1600x1067), ``portrait.jpg``
(1080x1620) and ``square.jpg`` (1200x1200). Every pixel comes from the formulas below and a fixed seed, so
the output is the same on every run with the same numpy/OpenCV versions.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
QUALITY = 90

Image = npt.NDArray[np.uint8]
Float = npt.NDArray[np.float64]


def _gradient(h: int, w: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Float:
    """A vertical BGR gradient from ``top`` to ``bottom`` as floats."""
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    return np.broadcast_to(np.array(top) * (1 - t) + np.array(bottom) * t, (h, w, 3)).copy()


def _ridge(w: int, rng: np.random.Generator, base: float, amp: float, octaves: int = 5) -> Float:
    """A hill silhouette: the sum of a few random sine octaves, ``base`` ± ``amp`` pixels."""
    x = np.arange(w, dtype=np.float64)
    y = np.zeros(w)
    for k in range(octaves):
        freq = (k + 1) ** 1.7 / w * 2 * np.pi
        y += np.sin(x * freq * rng.uniform(0.8, 1.2) + rng.uniform(0, 2 * np.pi)) / (k + 1) ** 1.2
    return base + amp * y / np.abs(y).max()


def _texture(h: int, w: int, rng: np.random.Generator, strength: float) -> Float:
    """Soft grain so flat areas have detail to track (blurred noise, zero mean)."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2)
    return (noise * strength)[..., None].astype(np.float64)


def landscape(w: int = 1600, h: int = 1067, seed: int = 1) -> Image:
    """Sunset sky, a sun with a glow, five layered hills and a few trees on the nearest ridge."""
    rng = np.random.default_rng(seed)
    img = _gradient(h, w, (140, 90, 60), (120, 180, 250))
    yy, xx = np.mgrid[0:h, 0:w]
    sun = (0.68 * w, 0.38 * h)
    dist = np.hypot(xx - sun[0], yy - sun[1])
    img += (np.exp(-((dist / (0.22 * h)) ** 2)) * 90)[..., None] * np.array([0.6, 0.9, 1.0])
    img[dist < 0.06 * h] = (200, 245, 255)
    for i, colour in enumerate([(120, 110, 130), (100, 105, 95), (80, 100, 70), (55, 85, 50), (35, 60, 35)]):
        ridge = _ridge(w, rng, base=h * (0.5 + 0.1 * i), amp=h * (0.05 + 0.015 * i))
        mask = yy > ridge[None, :]
        shade = 1.0 - 0.25 * (yy - ridge[None, :]).clip(0, h) / h
        img[mask] = (np.array(colour)[None, :] * shade[mask][:, None]).clip(0, 255)
    near = _ridge(w, np.random.default_rng(seed), base=h * 0.9, amp=h * 0.11)
    for x in rng.integers(40, w - 40, 14):
        base_y = int(near[x]) if near[x] < h else h - 1
        height = int(rng.uniform(0.08, 0.16) * h)
        pts = np.array([[x, base_y - height], [x - height // 4, base_y], [x + height // 4, base_y]], np.int32)
        cv2.fillPoly(img, [pts], (30, 55, 25), lineType=cv2.LINE_AA)
    img += _texture(h, w, rng, 4.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def portrait(w: int = 1080, h: int = 1620, seed: int = 2) -> Image:
    """A tall lighthouse on a cliff under a starry dusk sky, with a striped tower and a lit lamp."""
    rng = np.random.default_rng(seed)
    img = _gradient(h, w, (70, 30, 20), (170, 120, 200))
    for x, y, r in zip(
        rng.integers(0, w, 160), rng.integers(0, h // 2, 160), rng.uniform(1, 2.6, 160), strict=True
    ):
        cv2.circle(img, (int(x), int(y)), int(r), (235, 235, 255), -1, cv2.LINE_AA)
    yy, xx = np.arange(h)[:, None], np.arange(w)[None, :]
    sea = _gradient(h, w, (130, 85, 45), (80, 45, 15))
    sea_mask = np.broadcast_to(yy > h * 0.8, (h, w))
    img[sea_mask] = sea[sea_mask]
    cliff = _ridge(w, rng, base=h * 0.78, amp=h * 0.04)
    img[(yy > cliff[None, :]) & (xx > w * 0.36 - (yy - h * 0.78) * 0.5)] = (45, 60, 70)
    cx, top, bottom = int(w * 0.62), int(h * 0.3), int(cliff[int(w * 0.62)])
    for i, y in enumerate(range(top, bottom, (bottom - top) // 7)):
        half_top = 38 + (y - top) * 0.06
        half_bot = 38 + (y + (bottom - top) // 7 - top) * 0.06
        y2 = min(bottom, y + (bottom - top) // 7)
        quad = np.array(
            [[cx - half_top, y], [cx + half_top, y], [cx + half_bot, y2], [cx - half_bot, y2]], np.int32
        )
        cv2.fillPoly(img, [quad], (40, 40, 200) if i % 2 == 0 else (240, 240, 240), cv2.LINE_AA)
    cv2.rectangle(img, (cx - 44, top - 70), (cx + 44, top), (60, 60, 60), -1)
    cv2.rectangle(img, (cx - 30, top - 60), (cx + 30, top - 8), (120, 230, 255), -1)
    cv2.fillPoly(
        img, [np.array([[cx - 54, top - 70], [cx + 54, top - 70], [cx, top - 130]], np.int32)], (40, 40, 160)
    )
    glow = np.exp(-(((xx - cx) ** 2 + (yy - (top - 35)) ** 2) / (2 * 120.0**2)))
    img += (glow * 70)[..., None] * np.array([0.4, 0.9, 1.0])
    img += _texture(h, w, rng, 3.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def square(size: int = 1200, seed: int = 3) -> Image:
    """Overlapping translucent circles, rings and squares on a checker-and-stripe backdrop."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    checker = ((xx // 75 + yy // 75) % 2).astype(np.float64)
    img = np.stack([200 - 40 * checker, 215 - 30 * checker, 235 - 20 * checker], axis=-1)
    img += (np.sin((xx + yy) / 18.0) * 10)[..., None]
    palette = [(60, 90, 230), (230, 160, 40), (80, 200, 120), (200, 70, 160), (40, 200, 240), (150, 90, 60)]
    for _ in range(26):
        layer = img.copy()
        colour = palette[int(rng.integers(len(palette)))]
        x, y, r = (int(v) for v in (rng.integers(0, size), rng.integers(0, size), rng.integers(40, 170)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(layer, (x, y), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(layer, (x, y), r, colour, 14, cv2.LINE_AA)
        else:
            box = cv2.boxPoints(((x, y), (2 * r, 2 * r), float(rng.uniform(0, 90)))).astype(np.int32)
            cv2.fillPoly(layer, [box], colour, cv2.LINE_AA)
        img = 0.3 * img + 0.7 * layer
    img += _texture(size, size, rng, 5.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    """Write every sample image next to this script."""
    for name, image in (("landscape", landscape()), ("portrait", portrait()), ("square", square())):
        path = HERE / f"{name}.jpg"
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        if not ok:
            raise RuntimeError(f"could not encode {name}")
        path.write_bytes(data.tobytes())
        print(f"{path.name}: {image.shape[1]}x{image.shape[0]}, {len(data) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
