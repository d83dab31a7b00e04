"""What an ``i2v bulk`` run asks for: prompts, images, and the job matrix pairing them."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class BulkInputError(Exception):
    """The run's inputs cannot make a job matrix (nothing was uploaded or charged)."""


@dataclass(frozen=True)
class ImageFile:
    """A readable JPEG, PNG or WebP image of the images directory."""

    path: Path
    sha256: str
    content_type: str

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name


@dataclass(frozen=True)
class Skipped:
    """A file of the images directory that is not used, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class JobSpec:
    """One job of the matrix: an image (None: a video from the prompt alone), a prompt, the model, its settings."""

    image: ImageFile | None
    prompt: str
    model: str
    settings: dict[str, Any]

    @property
    def image_name(self) -> str:
        """The image's file name, or ``(prompt)`` for a video from the prompt alone."""
        return self.image.name if self.image else "(prompt)"

    @property
    def image_sha256(self) -> str:
        """The image's content digest ("" without an image)."""
        return self.image.sha256 if self.image else ""

    @property
    def key(self) -> str:
        """A digest of the job's content: the same image, prompt, model and settings give the same key."""
        content = {
            "image_sha256": self.image.sha256 if self.image else None,
            "prompt": self.prompt,
            "model": self.model,
            "settings": self.settings,
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def idempotency_key(self, attempt: int) -> str:
        """The Idempotency-Key of one submission: the content digest and the attempt number (0, then retries)."""
        return f"i2v-bulk-{self.key[:48]}-{attempt}"


def read_prompts(path: Path) -> list[str]:
    """The prompts of a file, one a line; blank lines and ``#`` comments are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BulkInputError(f"cannot read the prompts file {path}: {exc}") from exc
    prompts = [line.strip() for line in lines]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise BulkInputError(f"{path} has no prompts (one a line; blank lines and # comments are ignored)")
    return prompts


def sniff_content_type(data: bytes) -> str | None:
    """The image type its first bytes show (JPEG, PNG or WebP), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _check_image(path: Path) -> ImageFile | Skipped:
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(path.name, f"unreadable ({exc.strerror or exc})")
    content_type = sniff_content_type(data)
    if content_type is None:
        return Skipped(path.name, "not a JPEG, PNG or WebP image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.size  # noqa: B018  (opening reads the header; the size proves it parsed)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return Skipped(path.name, "the image header cannot be decoded")
    return ImageFile(path, hashlib.sha256(data).hexdigest(), content_type)


def scan_images(directory: Path) -> tuple[list[ImageFile], list[Skipped]]:
    """The usable images of a directory in name order, and the files skipped with the reason."""
    if not directory.is_dir():
        raise BulkInputError(f"--images-dir {directory} is not a directory")
    images: list[ImageFile] = []
    skipped: list[Skipped] = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(Skipped(path.name, f"not an image file ({', '.join(IMAGE_SUFFIXES)})"))
            continue
        result = _check_image(path)
        if isinstance(result, ImageFile):
            images.append(result)
        else:
            skipped.append(result)
    return images, skipped


def prompt_jobs(prompts: list[str], model: str, settings: dict[str, Any]) -> list[JobSpec]:
    """A video from each prompt alone (its start image is made by the model's image model); duplicates dropped."""
    specs: dict[str, JobSpec] = {}
    for prompt in prompts:
        spec = JobSpec(None, prompt, model, settings)
        specs.setdefault(spec.key, spec)
    return list(specs.values())


def job_matrix(
    images: list[ImageFile], prompts: list[str], model: str, settings: dict[str, Any], *, one_to_one: bool
) -> list[JobSpec]:
    """Every image with every prompt, or (one to one) the n-th image with the n-th prompt; duplicates dropped."""
    if not images:
        raise BulkInputError("no usable images (jpg, jpeg, png or webp) in the images directory")
    if one_to_one and len(images) != len(prompts):
        raise BulkInputError(
            f"--one-to-one pairs images with prompts in order, but there are {len(images)} images and "
            f"{len(prompts)} prompts; make the counts equal or drop --one-to-one for every combination"
        )
    pairs = zip(images, prompts, strict=True) if one_to_one else ((i, p) for i in images for p in prompts)
    specs: dict[str, JobSpec] = {}
    for image, prompt in pairs:
        spec = JobSpec(image, prompt, model, settings)
        specs.setdefault(spec.key, spec)
    return list(specs.values())
