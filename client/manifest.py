"""The bulk manifest: one JSON file in the output directory recording every job, rewritten atomically."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_NAME = "i2v-manifest.json"
ACTIVE = {"submitting", "pending", "processing"}
FINISHED = {"completed", "failed", "canceled"}


class ManifestError(Exception):
    """The manifest exists but cannot be read."""


class Entry(BaseModel):
    """One job of a bulk run: what was asked for, the key it was submitted with, and where it got to.

    ``state`` is ``new``, ``submitting`` (the request may have reached the server), a job status (``pending``,
    ``processing``, ``completed``, ``failed``, ``canceled``), ``unpaid`` (not submitted: too few credits) or
    ``error`` (a client-side problem; ``error`` says which).
    """

    model_config = ConfigDict(extra="ignore")
    key: str
    image: str
    image_sha256: str
    prompt: str
    model: str
    settings: dict[str, Any]
    attempt: int = 0
    idempotency_key: str | None = None
    state: str = "new"
    job_id: str | None = None
    previous_job_ids: list[str] = Field(default_factory=list)
    credits: int | None = None
    error: str | None = None
    file: str | None = None
    created_at: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None


class _File(BaseModel):
    version: int = 1
    jobs: dict[str, Entry] = Field(default_factory=dict)


class Manifest:
    """The entries of one output directory; every change is written to disk at once (temp file + rename)."""

    def __init__(self, path: Path, data: _File) -> None:
        self.path = path
        self._data = data
        self._lock = threading.Lock()

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        """The manifest in ``directory`` (empty when there is none yet)."""
        path = directory / MANIFEST_NAME
        if not path.exists():
            return cls(path, _File())
        try:
            return cls(path, _File.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError) as exc:
            raise ManifestError(f"{path} cannot be read ({exc}); move it away to start afresh") from exc

    def get(self, key: str) -> Entry | None:
        """The entry for a job key, if any."""
        with self._lock:
            entry = self._data.jobs.get(key)
            return entry.model_copy() if entry else None

    def put(self, entry: Entry) -> None:
        """Record a new entry (or replace one) and save."""
        with self._lock:
            self._data.jobs[entry.key] = entry.model_copy()
            self._save()

    def update(self, key: str, **changes: Any) -> Entry:
        """Change fields of an entry and save; return the updated copy."""
        with self._lock:
            entry = self._data.jobs[key].model_copy(update=changes)
            self._data.jobs[key] = entry
            self._save()
            return entry.model_copy()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, self._data.model_dump_json(indent=2).encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so readers see the old content or the new, never a part (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write pretty JSON atomically."""
    write_atomic(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())


def now_iso() -> str:
    """The current UTC time as ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
