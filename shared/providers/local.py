"""The local engine provider: camera-motion videos rendered in-process by a pool of worker threads.

It is no AI model: it moves a virtual camera over the still image (see ``shared.engine``). It runs only inside
the local server (``i2v serve``), which starts the workers; elsewhere it reports itself unavailable. Jobs are
finished through the same path hosted providers use (``jobs.complete_with_files`` / ``jobs.fail``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from shared import errors, jobs
from shared.db import get_db
from shared.providers.base import JobRequest, Provider, Submission
from shared.settings import get_settings

log = logging.getLogger("i2v.local_engine")
_PROGRESS_EVERY_S = 0.5
_STOP = UUID(int=0)


class LocalEngine(Provider):
    """Renders jobs of provider ``local`` on worker threads of this process."""

    name: ClassVar[str] = "local"

    def __init__(self) -> None:
        self._queue: queue.Queue[UUID] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._active: set[UUID] = set()
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """True while worker threads are serving the queue."""
        return any(t.is_alive() for t in self._threads)

    def unavailable_reason(self) -> str | None:
        if not get_settings().local_engine:
            return "the local engine is switched off (LOCAL_ENGINE=false)"
        if not self.running:
            return "the local engine runs only inside the local server (i2v serve)"
        return None

    def submit(self, job: JobRequest) -> Submission:
        self._enqueue(job.job_id)
        return Submission(request_id=f"local-{job.job_id}")

    def start(self, workers: int) -> None:
        """Start the worker threads and pick up jobs a previous run left unfinished."""
        if self.running:
            return
        self._threads = [
            threading.Thread(target=self._serve, name=f"i2v-engine-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()
        self.resume_unfinished()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the workers finish their current job, then stop them; queued jobs stay pending for the next start."""
        while True:
            try:
                job_id = self._queue.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self._active.discard(job_id)
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def resume_unfinished(self) -> int:
        """Queue every pending or processing local job (e.g. after a crash); return how many."""
        ids = [row[0] for row in get_db().call_rows("unfinished_jobs", provider=self.name, limit=10_000)]
        for job_id in ids:
            self._enqueue(job_id)
        return len(ids)

    def _enqueue(self, job_id: UUID) -> None:
        with self._lock:
            if job_id in self._active:
                return
            self._active.add(job_id)
        self._queue.put(job_id)

    def _serve(self) -> None:
        while (job_id := self._queue.get()) != _STOP:
            try:
                self.run_job(job_id)
            except Exception:  # a worker must survive any one job; the job itself was failed and refunded
                log.exception("local engine job crashed", extra={"job_id": str(job_id)})
            finally:
                with self._lock:
                    self._active.discard(job_id)

    def run_job(self, job_id: UUID) -> None:
        """Render one job and complete it, or fail it with a refund."""
        job = get_db().call("job_for_worker", job=job_id)
        if job is None or job["status"] not in ("pending", "processing"):
            return
        get_db().call("mark_processing", job=job_id, progress=0.0)
        try:
            self._render_and_complete(job_id, job)
        except errors.I2VError as exc:
            jobs.fail(job_id, exc.message)
        except Exception as exc:
            log.exception("render failed", extra={"job_id": str(job_id)})
            jobs.fail(job_id, f"The local engine could not render this video: {type(exc).__name__}")

    def _render_and_complete(self, job_id: UUID, job: dict[str, Any]) -> None:
        from shared.engine.render import ImageDecodeError, render_video  # heavy: OpenCV + PyAV

        image = jobs.load_image(job["image_url"], UUID(job["user_id"]))
        settings = job["settings"]
        with jobs.work_dir() as tmp:
            video, thumb = Path(tmp) / "video.mp4", Path(tmp) / "thumb.jpg"
            try:
                result = render_video(
                    image,
                    job["prompt"],
                    resolution=settings["resolution"],
                    aspect_ratio=settings["aspect_ratio"],
                    duration=int(settings["duration"]),
                    out_path=video,
                    thumb_path=thumb,
                    progress=_progress_reporter(job_id),
                )
            except ImageDecodeError as exc:
                raise errors.InvalidField("image_url", str(exc)) from exc
            jobs.complete_with_files(
                job_id,
                UUID(job["user_id"]),
                video,
                thumb,
                result={
                    "width": result.width,
                    "height": result.height,
                    "fps": result.fps,
                    "frames": result.frames,
                    "duration_s": result.duration_s,
                    "motion": result.motion,
                },
            )


def _progress_reporter(job_id: UUID) -> Any:
    last = [0.0]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] >= _PROGRESS_EVERY_S and fraction < 1:
            last[0] = now
            get_db().call("set_job_progress", job=job_id, progress=round(min(fraction, 0.99), 3))

    return report


_engine: LocalEngine | None = None


def get_local_engine() -> LocalEngine:
    """The process-wide local engine."""
    global _engine
    if _engine is None:
        _engine = LocalEngine()
    return _engine
