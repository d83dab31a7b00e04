"""``i2v bulk`` end to end against the running stack: pairing, resuming, paying once, retrying, refusing."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from client.cli import app
from client.manifest import MANIFEST_NAME
from shared.db import Database
from tests.conftest import Caller, make_caller
from tests.test_video_status import _png_with_broken_pixels

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--model", "local-motion", "--duration", "1", "--resolution", "480p", "--aspect-ratio", "16:9"]
NAME = re.compile(r"^[0-9a-f-]{36}_local-motion_\d{8}_\d{6}\.mp4$")


def _image(path: Path, colour: tuple[int, int, int], fmt: str = "JPEG") -> Path:
    img = Image.new("RGB", (320, 240), colour)
    for x in range(0, 320, 40):
        img.paste((255 - colour[0], 80, x % 255), (x, 0, x + 20, 240))
    img.save(path, format=fmt)
    return path


def _inputs(tmp: Path, prompts: list[str], n_images: int = 2) -> tuple[Path, Path]:
    images = tmp / "images"
    images.mkdir()
    for n in range(n_images):
        _image(images / f"img{n}.{('jpg', 'png')[n % 2]}", (40 + 60 * n, 120, 200), ("JPEG", "PNG")[n % 2])
    prompts_file = tmp / "prompts.txt"
    prompts_file.write_text("# camera moves\n\n" + "\n".join(prompts) + "\n")
    return prompts_file, images


def bulk(caller: Caller, base_url: str, prompts: Path, images: Path, out: Path, *extra: str) -> Result:
    """Run ``i2v bulk`` in-process as the caller."""
    args = ["bulk", str(prompts), "--images-dir", str(images), "--output-dir", str(out), *FAST]
    args += ["--poll-interval", "0.2", *extra]
    env = {"I2V_API_URL": base_url, "I2V_TOKEN": caller.token}
    return CliRunner().invoke(app, args, env=env)


def _text(result: Result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _manifest(out: Path) -> dict[str, Any]:
    jobs: dict[str, Any] = json.loads((out / MANIFEST_NAME).read_text())["jobs"]
    return jobs


def _jobs(caller: Caller) -> list[dict[str, Any]]:
    videos: list[dict[str, Any]] = caller.http.get("/functions/v1/list-videos", params={"limit": 200}).json()[
        "videos"
    ]
    return videos


def _charges(caller: Caller) -> list[str]:
    entries = caller.http.get("/functions/v1/get-credits", params={"limit": 200}).json()["entries"]
    return [e["job_id"] for e in entries if e["kind"] == "generation"]


def _files(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".mp4", ".json")}


@pytest.fixture(scope="module")
def finished_run(
    stack: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Caller, Path, Result]]:
    """A completed run of 2 images x 2 prompts (4 one-second jobs) by a user granted 10 credits."""
    caller = make_caller(stack)
    caller.grant(10)
    tmp = tmp_path_factory.mktemp("bulk")
    prompts, images = _inputs(tmp, ["zoom in slowly", "pan right"])
    out = tmp / "downloads"
    result = bulk(caller, stack, prompts, images, out)
    yield caller, out, result
    caller.http.close()


def test_all_combinations_are_made_and_downloaded(finished_run: tuple[Caller, Path, Result]) -> None:
    """Every image with every prompt becomes one job, charged once, downloaded under the naming scheme."""
    caller, out, result = finished_run
    assert result.exit_code == 0, result.output
    entries = _manifest(out)
    assert sorted((e["image"], e["prompt"]) for e in entries.values()) == [
        ("img0.jpg", "pan right"),
        ("img0.jpg", "zoom in slowly"),
        ("img1.png", "pan right"),
        ("img1.png", "zoom in slowly"),
    ]
    assert {e["state"] for e in entries.values()} == {"completed"}
    videos = sorted(p.name for p in out.glob("*.mp4"))
    assert len(videos) == 4 and all(NAME.match(v) for v in videos)
    assert sorted(_charges(caller)) == sorted(e["job_id"] for e in entries.values())
    assert caller.balance() == 6


def test_videos_carry_tags_and_a_sidecar(finished_run: tuple[Caller, Path, Result]) -> None:
    """Each MP4 has the prompt and job id in its metadata, and a sidecar .json describes the job."""
    _, out, _ = finished_run
    entry = next(iter(_manifest(out).values()))
    video = out / entry["file"]
    with av.open(str(video)) as container:
        assert container.metadata["title"] == entry["prompt"]
        assert entry["job_id"] in container.metadata["comment"]
        assert container.streams.video[0].codec_context.name == "h264"
    side = json.loads(video.with_suffix(".json").read_text())
    assert side["job_id"] == entry["job_id"] and side["prompt"] == entry["prompt"]
    assert side["image"] == {"name": entry["image"], "sha256": entry["image_sha256"]}
    assert side["settings"] == {"duration": 1, "resolution": "480p", "aspect_ratio": "16:9"}
    assert side["credits"] == 1 and side["model"] == "local-motion" and side["created_at"]


def test_rerun_charges_nothing_and_downloads_nothing(
    stack: str, finished_run: tuple[Caller, Path, Result], tmp_path: Path
) -> None:
    """Running the same command again changes no file, creates no job and charges nothing."""
    caller, out, _ = finished_run
    before, jobs_before = _files(out), len(_jobs(caller))
    tmp = out.parent
    result = bulk(caller, stack, tmp / "prompts.txt", tmp / "images", out)
    assert result.exit_code == 0, result.output
    assert _files(out) == before
    assert len(_jobs(caller)) == jobs_before == 4
    assert caller.balance() == 6


def test_one_to_one_pairs_in_order(caller: Caller, stack: str, tmp_path: Path) -> None:
    """--one-to-one pairs the n-th image (by name) with the n-th prompt."""
    caller.grant(5)
    prompts, images = _inputs(tmp_path, ["first prompt", "second prompt"])
    result = bulk(caller, stack, prompts, images, tmp_path / "out", "--one-to-one")
    assert result.exit_code == 0, result.output
    pairs = sorted((e["image"], e["prompt"]) for e in _manifest(tmp_path / "out").values())
    assert pairs == [("img0.jpg", "first prompt"), ("img1.png", "second prompt")]
    assert caller.balance() == 3


def test_one_to_one_refuses_unequal_counts(caller: Caller, stack: str, tmp_path: Path, db: Database) -> None:
    """--one-to-one with 2 images and 3 prompts stops with a clear message before any upload or charge."""
    caller.grant(5)
    prompts, images = _inputs(tmp_path, ["a", "b", "c"])
    result = bulk(caller, stack, prompts, images, tmp_path / "out", "--one-to-one")
    assert result.exit_code == 2
    assert "2 images and 3 prompts" in _text(result)
    assert _jobs(caller) == [] and caller.balance() == 5
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_dry_run_shows_the_total_and_charges_nothing(caller: Caller, stack: str, tmp_path: Path) -> None:
    """--dry-run prints the job matrix, the total from a quote and the balance, and creates no job."""
    caller.grant(10)
    prompts, images = _inputs(tmp_path, ["zoom in", "pan left", "fade in"])
    result = bulk(caller, stack, prompts, images, tmp_path / "out", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "total: 6 credits for 6 new jobs; balance 10; after 4" in _text(result)
    assert _jobs(caller) == [] and caller.balance() == 10


def test_insufficient_credits_stop_before_submitting(caller: Caller, stack: str, tmp_path: Path) -> None:
    """When the quoted total exceeds the balance nothing is submitted and the exit code is non-zero."""
    caller.grant(3)
    prompts, images = _inputs(tmp_path, ["zoom in", "pan left"])
    result = bulk(caller, stack, prompts, images, tmp_path / "out")
    assert result.exit_code == 1
    assert "Not enough credits" in _text(result) and "needs 4 credits" in _text(result)
    assert _jobs(caller) == [] and _charges(caller) == [] and caller.balance() == 3
    assert {e["state"] for e in _manifest(tmp_path / "out").values()} == {"unpaid"}


def test_unreadable_and_non_image_files_are_reported_and_skipped(
    caller: Caller, stack: str, tmp_path: Path
) -> None:
    """A text file, a fake .png and a dangling .jpg link are named in the output and skipped; the rest runs."""
    caller.grant(5)
    prompts, images = _inputs(tmp_path, ["zoom in"], n_images=1)
    (images / "notes.txt").write_text("not an image")
    (images / "fake.png").write_text("not a png either")
    (images / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    result = bulk(caller, stack, prompts, images, tmp_path / "out")
    assert result.exit_code == 0, result.output
    flat = _text(result)
    assert "skipped notes.txt" in flat and "skipped fake.png" in flat and "skipped gone.jpg" in flat
    assert [e["image"] for e in _manifest(tmp_path / "out").values()] == ["img0.jpg"]
    assert caller.balance() == 4


def test_failed_job_is_retried_only_with_retry_failed(caller: Caller, stack: str, tmp_path: Path) -> None:
    """A failed job stays failed on a plain re-run; --retry-failed submits it again under a new key."""
    caller.grant(5)
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(_png_with_broken_pixels())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("zoom in\n")
    out = tmp_path / "out"
    first = bulk(caller, stack, prompts, images, out)
    assert first.exit_code == 1
    [entry] = _manifest(out).values()
    assert entry["state"] == "failed" and entry["error"]
    again = bulk(caller, stack, prompts, images, out)
    assert again.exit_code == 1 and len(_jobs(caller)) == 1
    retried = bulk(caller, stack, prompts, images, out, "--retry-failed")
    assert retried.exit_code == 1
    [entry2] = _manifest(out).values()
    assert entry2["attempt"] == 1 and entry2["previous_job_ids"] == [entry["job_id"]]
    assert entry2["idempotency_key"] != entry["idempotency_key"]
    assert len(_jobs(caller)) == 2 and len(_charges(caller)) == 2
    assert caller.balance() == 5  # both failures were refunded


def test_killed_run_resumes_and_charges_each_job_once(caller: Caller, stack: str, tmp_path: Path) -> None:
    """A run killed after its first submissions, then re-run, ends with every video and one charge per job."""
    caller.grant(10)
    prompts, images = _inputs(tmp_path, ["zoom in", "pan left", "orbit"])
    out = tmp_path / "out"
    args = [sys.executable, "-m", "client", "bulk", str(prompts), "--images-dir", str(images)]
    args += ["--output-dir", str(out), "--concurrency", "1", *FAST]
    env = {**os.environ, "I2V_API_URL": stack, "I2V_TOKEN": caller.token}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _submitted(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert _submitted(out), "the run submitted nothing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    result = bulk(caller, stack, prompts, images, out)
    assert result.exit_code == 0, result.output
    entries = _manifest(out).values()
    assert len(entries) == 6 and {e["state"] for e in entries} == {"completed"}
    charges = _charges(caller)
    assert sorted(charges) == sorted(e["job_id"] for e in entries) and len(set(charges)) == 6
    assert len(_jobs(caller)) == 6 and caller.balance() == 4
    assert len(list(out.glob("*.mp4"))) == 6


def _submitted(out: Path) -> bool:
    try:
        return any(e.get("job_id") for e in _manifest(out).values())
    except (OSError, ValueError):
        return False


def test_png_fixture_is_a_png() -> None:
    """The broken-pixel image used above still has a valid PNG header (so the client uploads it)."""
    with Image.open(io.BytesIO(_png_with_broken_pixels())) as img:
        assert img.format == "PNG"


def test_prompts_without_images_make_videos_from_the_prompts(
    caller: Caller, stack: str, tmp_path: Path
) -> None:
    """Without --images-dir, every prompt becomes a video from the prompt alone (its title card made first),
    each charged once and downloaded; a rerun charges and downloads nothing."""
    caller.grant(10)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A harbour at dawn, zoom in\nA city at night, pan right\n")
    out = tmp_path / "out"
    args = ["bulk", str(prompts), "--output-dir", str(out), *FAST, "--poll-interval", "0.2"]
    env = {"I2V_API_URL": stack, "I2V_TOKEN": caller.token}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    entries = list(_manifest(out).values())
    assert {e["image"] for e in entries} == {"(prompt)"} and all(e["state"] == "completed" for e in entries)
    assert sorted(NAME.match(e["file"]) is not None for e in entries) == [True, True]
    assert caller.balance() == 10 - 2 * (1 + 1)  # a card (1) and one second of video (1) each
    again = CliRunner().invoke(app, args, env=env)
    assert again.exit_code == 0 and caller.balance() == 6
