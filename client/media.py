"""Downloaded videos: file names, atomic download, and metadata tags written without re-encoding."""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from client.api import I2VClient


class TaggingUnavailable(Exception):
    """PyAV is not installed, so MP4 metadata tags cannot be written."""


def video_filename(job_id: str, model: str, created_at: str | None) -> str:
    """``{job_id}_{model}_{YYYYmmdd_HHMMSS}.mp4``, the time being the job's creation (UTC)."""
    when = datetime.fromisoformat(created_at) if created_at else datetime.now(UTC)
    stamp = when.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    safe_model = "".join(c if c.isalnum() or c in "-._" else "-" for c in model)
    return f"{job_id}_{safe_model}_{stamp}.mp4"


def tag_mp4(src: Path, dst: Path, tags: dict[str, str]) -> None:
    """Copy an MP4's streams into ``dst`` (no re-encoding) with container metadata tags set."""
    try:
        import av
    except ImportError as exc:
        raise TaggingUnavailable("install PyAV (pip install av) to tag videos") from exc
    with av.open(str(src)) as source, av.open(str(dst), "w", format="mp4") as target:
        streams = {
            s.index: target.add_stream_from_template(s)
            for s in source.streams
            if s.type in ("video", "audio")
        }
        for name, value in tags.items():
            target.metadata[name] = value
        for packet in source.demux(*[source.streams[i] for i in streams]):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = streams[packet.stream.index]
            target.mux(packet)


def download_video(
    api: I2VClient, url: str, dest: Path, tags: dict[str, str] | None = None
) -> tuple[Path, bool]:
    """Download a video to ``dest`` atomically, tagging it on the way; return (path, tagged).

    Nothing appears at ``dest`` until it is complete. Without PyAV the video is kept untagged.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
    tagged_part = part.with_suffix(".tagged.part")
    try:
        api.download_to(url, part)
        tagged = False
        if tags:
            try:
                tag_mp4(part, tagged_part, tags)
                tagged_part.replace(part)
                tagged = True
            except TaggingUnavailable:
                tagged = False  # PyAV is optional for clients: keep the video, untagged
        part.replace(dest)
        return dest, tagged
    finally:
        for leftover in (part, tagged_part):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def video_tags(job_id: str, prompt: str | None) -> dict[str, str]:
    """The metadata tags a downloaded video gets: the prompt (title, description) and the job id (comment)."""
    tags = {"comment": f"i2v job_id={job_id}"}
    if prompt:
        tags.update(title=prompt, description=prompt)
    return tags


def sidecar_path(video: Path) -> Path:
    """The ``.json`` next to a video."""
    return video.with_suffix(".json")
