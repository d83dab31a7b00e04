"""``make demo``: the main job end to end on the embedded stack, driven through the public HTTP API: a video of
each sample image, a video from a prompt alone (text -> title card -> video) and one continuing the first video
from its last frame."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from client.api import ApiError, I2VClient
from client.media import video_filename

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_USER = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
PROMPTS = [
    "slow zoom in on the horizon",
    "pan right across the scene",
    "orbit around the subject, fade in",
    "pull back to reveal everything",
]
PROMPT_ALONE = "A lighthouse keeps watch over a quiet harbour at dawn - slow zoom in"
console = Console()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _i2v(*args: str) -> str:
    """Run an ``i2v`` subcommand of this installation and return its stdout."""
    out = subprocess.run([sys.executable, "-m", "client", *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def _start_server(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "client", "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LOCAL_ENGINE": "true"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/functions/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"the server did not become healthy; see {log_path}")


def _server_log() -> Path:
    """Where the demo's server writes its log: in I2V_HOME, never among the downloaded videos."""
    from shared.settings import get_settings

    path = get_settings().home / "logs" / "demo-server.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _make_one(api: I2VClient, image: Path, prompt: str, duration: int, out: Path) -> dict[str, Any]:
    return _make(api, image.name, prompt, duration, out, lambda: {"image_url": api.upload_image(image)})


def _make(
    api: I2VClient,
    label: str,
    prompt: str,
    duration: int,
    out: Path,
    start: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """One video: ``start`` gives its start (an image_url, an image_id, a video_id, or nothing: the prompt)."""
    row: dict[str, Any] = {"image": label, "prompt": prompt}
    started = time.monotonic()
    try:
        body = {
            "model_id": "local-motion",
            "prompt": prompt,
            **start(),
            "settings": {"resolution": "480p", "aspect_ratio": "16:9", "duration": duration},
        }
        created = api.generate(body, idempotency_key=f"demo-{uuid.uuid4()}")
        row.update(job_id=created["job_id"], credits=created["credits_used"])
        job = api.wait(created["job_id"], timeout=300)
        row["status"] = job["status"]
        if job["status"] == "completed":
            video = out / video_filename(created["job_id"], "local-motion", job.get("created_at"))
            api.download(job["video_url"], video)
            api.download(job["thumbnail_url"], video.with_suffix(".jpg"))
            row["file"] = str(video)
            row["size"] = video.stat().st_size
        else:
            row["error"] = job.get("error_message")
    except (ApiError, httpx.HTTPError, OSError) as exc:
        row.update(status="error", error=str(exc))
    row["seconds"] = round(time.monotonic() - started, 1)
    return row


def run_demo(*, output_dir: str = "downloads", duration: int = 3) -> int:
    """Run the demo; return the process exit code (non-zero when any video failed)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not images:
        console.print("[red]no sample images in examples/[/red]")
        return 1
    port = _free_port()
    log_path = _server_log()
    console.print(f"starting the local stack on port {port} (embedded Postgres, local storage, local engine)")
    console.print(f"server log: {log_path}", highlight=False, soft_wrap=True)
    console.print(
        f"demo user: {DEMO_USER} (i2v dev-token --user {DEMO_USER} signs in as it)", highlight=False
    )
    server = _start_server(port, log_path)
    try:
        token = _i2v("dev-token", "--user", str(DEMO_USER), "--expires-in", "3600")
        needed = (
            duration * (len(images) + 2) + 1
        )  # the sample images, a prompt alone (+1: its card), a sequel
        _i2v("credits", "grant", str(DEMO_USER), str(needed), "--reason", "demo credits")
        with I2VClient(f"http://127.0.0.1:{port}", token) as api:
            with ThreadPoolExecutor(max_workers=len(images)) as pool:
                rows = list(
                    pool.map(
                        lambda pair: _make_one(api, pair[0], pair[1], duration, out),
                        zip(images, PROMPTS * len(images), strict=False),
                    )
                )
            # Text -> image -> video: the start image is a title card the local engine sets from the prompt.
            rows.append(_make(api, "(prompt alone)", PROMPT_ALONE, duration, out, dict))
            # Continue a shot: the last frame of the first video starts the next one.
            first = next((r for r in rows if r.get("status") == "completed"), None)
            if first is not None:
                sequel = {"video_id": first["job_id"]}
                rows.append(
                    _make(api, f"(after {first['image']})", "slow pan right", duration, out, lambda: sequel)
                )
            balance = api.credits()["balance"]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    _print_table(rows, balance)
    failed = [r for r in rows if r.get("status") != "completed"]
    return 1 if failed else 0


def _print_table(rows: list[dict[str, Any]], balance: int) -> None:
    """One row per video; the files (or errors) are printed whole below it, one per line, to copy."""
    table = Table(title="i2v demo: local-motion videos")
    for column in ("#", "start", "prompt", "status", "credits", "seconds"):
        table.add_column(column, overflow="fold")
    for number, row in enumerate(rows, 1):
        table.add_row(
            str(number),
            row["image"],
            row["prompt"],
            row.get("status", "?"),
            str(row.get("credits", "-")),
            str(row["seconds"]),
        )
    console.print(table, crop=False)
    for number, row in enumerate(rows, 1):
        console.print(f"{number}. {row.get('file') or row.get('error', '')}", highlight=False, soft_wrap=True)
    console.print(f"credit balance after the demo: {balance} (user {DEMO_USER})", highlight=False)
