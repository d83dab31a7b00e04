"""The local engine provider: camera-motion videos rendered in-process by a pool of worker threads.

It is no AI model: it moves a virtual camera over the still image (see ``shared.providers.local.engine``). It runs only inside
the local server (``i2v serve``), which starts it in one process; elsewhere it reports itself unavailable.

How a job reaches it: in the engine's own process, ``submit`` queues the job at once. With several HTTP worker
processes (``i2v serve --workers N``), the others hold a channel to the engine (a datagram socket the server
sets up) and send it the job's id; a cancel travels the same way. Neither message is needed for correctness:
the engine also picks up claimable jobs from the database every few seconds, and every render asks the
database about its job with each progress report, stopping when the job was canceled.

A job is rendered by the engine that claimed it (``claim_engine_job``), once. Finishing is ordered so that a
canceled job's files never reach storage: claim the completion (``begin_engine_completion``), move the files,
then ``complete_job``; a cancel before the claim makes it fail and the files are discarded with the scratch
directory. Jobs are finished through the update sink the server gives the engine when it starts (the job
service applies a succeeded update with the files, or a failed one), the same path every provider's news takes.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal
from uuid import UUID

from shared import errors
from shared.db import get_db
from shared.media import inputs, scratch
from shared.providers.base import (
    JobRequest,
    OutputFiles,
    Provider,
    ProviderUpdate,
    Submission,
    UpdateKind,
    UpdateSink,
)
from shared.records import Job, load_job
from shared.settings import get_settings

log = logging.getLogger("i2v.local_engine")
_PROGRESS_EVERY_S = 0.5
#: A claim lapses this long after the engine's last word about the job (it renews it with every progress report).
LEASE_S = 30
#: How often the engine looks in the database for jobs no message told it about.
PICKUP_EVERY_S = 2.0
_PICKUP_LIMIT = 200
_STOP = UUID(int=0)


class _Render:
    """A render in progress on one of this engine's threads, and why it should stop (once it should)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reason = ""

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()


class LocalEngine(Provider):
    """Renders jobs of provider ``local`` on worker threads of this process."""

    name: ClassVar[str] = "local"

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[UUID, bool]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._control: threading.Thread | None = None
        self._active: set[UUID] = set()  # queued or rendering here
        self._again: set[UUID] = (
            set()
        )  # submitted again while active here (a video's next stage): run once more
        self._renders: dict[UUID, _Render] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = False
        self._render_threads = 0
        self._inbox: socket.socket | None = None  # messages from sibling worker processes
        self._channel: socket.socket | None = None  # to the engine in a sibling worker process
        self._warned_at = -1e9
        self.engine_id = ""
        self._sink: UpdateSink | None = None

    @property
    def running(self) -> bool:
        """True while this process runs the engine."""
        return self._started

    def unavailable_reason(self) -> str | None:
        if not get_settings().local_engine:
            return "the local engine is switched off (LOCAL_ENGINE=false)"
        if not self._started and self._channel is None:
            return "the local engine runs only inside the local server (i2v serve)"
        return None

    def submit(self, job: JobRequest) -> Submission:
        if self._started:
            if self._render_threads:
                self._enqueue(job.job_id, takeover=False)
        elif self._channel is not None and get_settings().local_engine_workers > 0:
            self._send(f"new {job.job_id}")
        return Submission(request_id=f"local-{job.job_id}")

    def job_canceled(self, job_id: UUID) -> None:
        """The job was canceled: stop its render now (here, or in the process that runs the engine)."""
        if self._started:
            self._stop_render(job_id, "canceled")
        elif self._channel is not None and get_settings().local_engine_workers > 0:
            self._send(f"cancel {job_id}")

    def connect(self, channel: socket.socket) -> None:
        """Hand jobs and cancels to the engine running in a sibling process, through ``channel``."""
        self._channel = channel

    def start(
        self, workers: int, *, inbox: socket.socket | None = None, sink: UpdateSink | None = None
    ) -> None:
        """Start ``workers`` render threads and the thread that takes messages and picks up unfinished jobs.

        With ``workers`` 0 the engine accepts jobs but renders none: they wait, pending, for an engine that does.
        """
        if self._started:
            return
        self._sink = sink or self._sink
        if self._sink is None:
            raise RuntimeError("the local engine needs an update sink to report its jobs to")
        self.engine_id = uuid.uuid4().hex
        self._stopping.clear()
        self._inbox = inbox
        self._render_threads = max(0, workers)
        self._threads = [
            threading.Thread(target=self._serve, name=f"i2v-engine-{i}", daemon=True)
            for i in range(self._render_threads)
        ]
        for thread in self._threads:
            thread.start()
        self._started = True
        if self._render_threads:
            self._control = threading.Thread(
                target=self._control_loop, name="i2v-engine-control", daemon=True
            )
            self._control.start()
        log.info("local engine started", extra={"render_threads": self._render_threads})

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: queued jobs stay pending and renders in progress are interrupted and given back, for the next
        start to take up at once."""
        if not self._started:
            return
        self._stopping.set()
        while True:
            try:
                job_id, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self._active.discard(job_id)
        with self._lock:
            for render in self._renders.values():
                render.request_stop("shutdown")
        for _ in self._threads:
            self._queue.put((_STOP, False))
        deadline = time.monotonic() + timeout
        for thread in [*self._threads, *([self._control] if self._control else [])]:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        self._control = None
        self._started = False

    def resume_unfinished(self, *, takeover: bool = True) -> int:
        """Queue the local jobs left unfinished (at start: every pending or processing one; later: those whose
        claim lapsed); return how many were queued."""
        procedure = "unfinished_jobs" if takeover else "claimable_engine_jobs"
        rows = get_db().call_rows(procedure, provider=self.name, limit=10_000 if takeover else _PICKUP_LIMIT)
        return sum(self._enqueue(row[0], takeover=takeover) for row in rows)

    def _enqueue(self, job_id: UUID, *, takeover: bool) -> bool:
        with self._lock:
            if job_id in self._active:
                if not takeover:
                    self._again.add(job_id)
                return False
            if self._stopping.is_set():
                return False
            self._active.add(job_id)
        self._queue.put((job_id, takeover))
        return True

    def _stop_render(self, job_id: UUID, reason: str) -> None:
        with self._lock:
            render = self._renders.get(job_id)
        if render is not None:
            render.request_stop(reason)

    def _send(self, message: str) -> None:
        assert self._channel is not None
        try:
            self._channel.send(message.encode(), socket.MSG_DONTWAIT)
        except OSError as exc:
            # The engine is restarting or behind: its periodic pick-up finds the job (a cancel is found by the
            # render's next progress report).
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning(
                    "could not reach the local engine (said once a minute)", extra={"error": str(exc)}
                )

    def _control_loop(self) -> None:
        """Take messages from sibling processes; pick up unfinished jobs at start and every PICKUP_EVERY_S."""
        takeover = True
        next_pickup = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_pickup:
                try:
                    self.resume_unfinished(takeover=takeover)
                    takeover = False
                except errors.I2VError as exc:
                    log.warning("local engine pick-up failed", extra={"error": exc.message})
                next_pickup = now + PICKUP_EVERY_S
            wait = min(0.5, max(0.0, next_pickup - time.monotonic()))
            if self._inbox is None:
                self._stopping.wait(wait)
                continue
            readable, _, _ = select.select([self._inbox], [], [], wait)
            if readable:
                self._take_messages()

    def _take_messages(self) -> None:
        assert self._inbox is not None
        while True:
            try:
                data = self._inbox.recv(256, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            kind, _, raw = data.decode("ascii", "replace").partition(" ")
            try:
                job_id = UUID(raw)
            except ValueError:
                continue
            if kind == "new":
                self._enqueue(job_id, takeover=False)
            elif kind == "cancel":
                self._stop_render(job_id, "canceled")

    def _serve(self) -> None:
        while (item := self._queue.get())[0] != _STOP:
            job_id, takeover = item
            try:
                self.run_job(job_id, takeover=takeover)
            except Exception:  # a worker must survive any one job
                log.exception("local engine job crashed", extra={"job_id": str(job_id)})
            finally:
                with self._lock:
                    self._active.discard(job_id)
                    again = job_id in self._again
                    self._again.discard(job_id)
                if again:
                    self._enqueue(job_id, takeover=False)

    def run_job(self, job_id: UUID, *, takeover: bool = False) -> None:
        """Claim one job and render it: complete it, fail it with a refund, or stop when it is canceled."""
        if self._stopping.is_set():
            return
        record = get_db().call(
            "claim_engine_job",
            job=job_id,
            provider=self.name,
            engine=self.engine_id,
            lease_s=LEASE_S,
            takeover=takeover,
        )
        if record is None:  # finished, canceled, or another engine's
            return
        job = Job.from_record(record)
        render = _Render()
        with self._lock:
            self._renders[job_id] = render
        try:
            self._render_and_complete(job_id, job, render)
        except _Stopped as stopped:
            self._stopped(job_id, render, stopped.frame, stopped.frames)
        except errors.InvalidField as exc:
            self._fail(job_id, exc.message, kind="input")
        except errors.I2VError as exc:
            self._fail(job_id, exc.message)
        except Exception as exc:
            log.exception("render failed", extra={"job_id": str(job_id)})
            self._fail(job_id, f"The local engine could not render this video: {type(exc).__name__}")
        finally:
            with self._lock:
                self._renders.pop(job_id, None)

    def _render_and_complete(self, job_id: UUID, job: Job, render: _Render) -> None:
        if job.makes_images:
            self._render_cards(job_id, job, render)
            return
        from shared.providers.local.engine.render import (  # heavy: OpenCV + PyAV
            ImageDecodeError,
            RenderStopped,
            render_video,
        )

        if job.image_url is None:
            raise errors.InvalidField("image_url", "The local engine needs a start image.")
        image = inputs.load_image(job.image_url)
        settings = job.current_settings
        with scratch.work_dir(job_id) as tmp:
            video, thumb = Path(tmp) / "video.mp4", Path(tmp) / "thumb.jpg"
            try:
                result = render_video(
                    image,
                    job.prompt,
                    resolution=settings["resolution"],
                    aspect_ratio=settings["aspect_ratio"],
                    duration=int(settings["duration"]),
                    out_path=video,
                    thumb_path=thumb,
                    progress=self._progress_reporter(job_id, render),
                    should_stop=render.stop.is_set,
                )
            except ImageDecodeError as exc:
                raise errors.InvalidField("image_url", str(exc)) from exc
            except RenderStopped as exc:
                raise _Stopped(exc.frame, exc.frames) from exc
            # Claim the completion before any file moves: a job canceled by now keeps nothing in storage.
            if render.stop.is_set() or not get_db().call(
                "begin_engine_completion", job=job_id, engine=self.engine_id, lease_s=LEASE_S
            ):
                raise _Stopped(result.frames, result.frames)
            facts = {
                "width": result.width,
                "height": result.height,
                "fps": result.fps,
                "frames": result.frames,
                "duration_s": result.duration_s,
                "motion": result.motion,
            }
            self._report(job_id, ProviderUpdate(UpdateKind.SUCCEEDED, files=OutputFiles(video, thumb, facts)))

    def _render_cards(self, job_id: UUID, job: Job, render: _Render) -> None:
        """An image job: one title card per image asked for (``local-card``)."""
        from shared.providers.local.engine.card import render_card  # Pillow

        settings = job.current_settings
        count = int(settings.get("num_images") or 1)
        fmt = "png" if settings.get("output_format") == "png" else "jpeg"
        with scratch.work_dir(job_id) as tmp:
            files, sizes = [], []
            for index in range(count):
                if render.stop.is_set():
                    raise _Stopped(index, count)
                path = Path(tmp) / f"card-{index}.{'png' if fmt == 'png' else 'jpg'}"
                card = render_card(
                    job.prompt,
                    aspect_ratio=str(settings.get("aspect_ratio") or "auto"),
                    output_format=fmt,
                    out_path=path,
                    seed=index,
                )
                files.append(path)
                sizes.append([card.width, card.height])
                get_db().call(
                    "engine_progress",
                    job=job_id,
                    engine=self.engine_id,
                    progress=(index + 1) / count,
                    lease_s=LEASE_S,
                )
            if render.stop.is_set() or not get_db().call(
                "begin_engine_completion", job=job_id, engine=self.engine_id, lease_s=LEASE_S
            ):
                raise _Stopped(count, count)
            facts = {"images": count, "sizes": sizes}
            update = ProviderUpdate(UpdateKind.SUCCEEDED, files=OutputFiles(None, None, facts, tuple(files)))
            self._report(job_id, update)

    def _stopped(self, job_id: UUID, render: _Render, frame: int, frames: int) -> None:
        """Log why a render stopped (its scratch files are gone already); on shutdown, give the claim back."""
        extra = {"job_id": str(job_id), "frame": frame, "frames": frames}
        reason = render.reason or ("shutdown" if self._stopping.is_set() else "")
        if reason == "shutdown":
            with contextlib.suppress(errors.I2VError):
                get_db().call("release_engine_job", job=job_id, engine=self.engine_id)
            log.info("render interrupted by shutdown; the job resumes at the next start", extra=extra)
            return
        if not reason:  # the completion claim was refused: the job changed under the render
            job = load_job(job_id)
            reason = str(job.status) if job else "gone"
        why = "another engine holds the job now" if reason == "released" else f"the job is {reason}"
        log.info("render stopped: %s", why, extra={**extra, "status": reason})

    def _fail(self, job_id: UUID, message: str, *, kind: Literal["provider", "input"] = "provider") -> None:
        log.info("render failed: %s", message, extra={"job_id": str(job_id)})
        applied = self._report(job_id, ProviderUpdate(UpdateKind.FAILED, message=message, failure_kind=kind))
        if getattr(applied, "result", None) == "ignored":  # canceled meanwhile: the cancel's refund stands
            log.info("render failed after the job was canceled", extra={"job_id": str(job_id)})

    def _report(self, job_id: UUID, update: ProviderUpdate) -> Any:
        assert self._sink is not None
        return self._sink(job_id, update)

    def _progress_reporter(self, job_id: UUID, render: _Render) -> Any:
        last = [time.monotonic()]

        def report(fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY_S and fraction < 1:
                last[0] = now
                status = get_db().call(
                    "engine_progress",
                    job=job_id,
                    engine=self.engine_id,
                    progress=round(min(fraction, 0.99), 3),
                    lease_s=LEASE_S,
                )
                if status != "processing":
                    render.request_stop(status)

        return report


class _Stopped(Exception):
    """A render stopped before its job completed (canceled, claim lost, or shutdown)."""

    def __init__(self, frame: int, frames: int) -> None:
        super().__init__(f"stopped at frame {frame} of {frames}")
        self.frame = frame
        self.frames = frames


_engine: LocalEngine | None = None


def get_local_engine() -> LocalEngine:
    """The process-wide local engine."""
    global _engine
    if _engine is None:
        _engine = LocalEngine()
    return _engine
