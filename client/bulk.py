"""``i2v bulk``: a video for every (image, prompt) pair of a folder and a prompts file, paid once, fetched once.

Re-running the same command is safe. Each job's Idempotency-Key is derived from its content (image hash, prompt,
model, settings) and an attempt number, so a job the server already has is replayed rather than charged again.
The manifest in the output directory records every job: a re-run skips completed downloads, follows jobs still
in flight, and resubmits failed jobs (with the next attempt number, hence a new key) only with --retry-failed.
Before submitting, the run is quoted; when the balance does not cover it, nothing new is submitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from client.api import ApiError, I2VClient
from client.bulk_inputs import JobSpec, job_matrix, prompt_jobs, read_prompts, scan_images
from client.manifest import Entry, Manifest, now_iso, write_json_atomic
from client.media import download_video, sidecar_path, video_filename, video_tags
from client.render import add_typed_column

_LABELS = {
    "done": "downloaded",
    "follow": "in flight",
    "submit": "new",
    "retry": "retry",
    "failed": "failed (--retry-failed resubmits)",
}


@dataclass(frozen=True)
class BulkOptions:
    """The options of one ``i2v bulk`` run."""

    prompts_file: Path
    images_dir: Path | None  # None: a video from each prompt alone
    model: str
    settings: dict[str, Any]
    output_dir: Path = Path("downloads")
    one_to_one: bool = False
    concurrency: int = 4
    dry_run: bool = False
    retry_failed: bool = False
    poll_interval: float = 1.0
    campaign_id: str | None = None


class BulkRun:
    """One run: plan from the manifest, quote, upload, submit, follow, download, summarise."""

    def __init__(self, api: I2VClient, opts: BulkOptions, console: Console, out: Console) -> None:
        self.api, self.opts, self.console, self.out = api, opts, console, out
        self.manifest = Manifest.load(opts.output_dir)
        self.image_urls: dict[str, str] = {}
        self.refused: str | None = None
        self.untagged = False

    def run(self) -> int:
        """Carry the run out; return the exit code (0 only when every job's video is downloaded)."""
        specs = self._specs()
        actions = {spec.key: self._plan(spec) for spec in specs}
        todo = [s for s in specs if actions[s.key] in ("submit", "retry")]
        quote = self._quote(todo[0]) if todo else None
        cost = quote["credits"] * len(todo) if quote else 0
        balance = quote["balance"] if quote else self.api.credits(limit=1)["balance"]
        if self.opts.dry_run:
            self._print_plan(specs, actions, quote, cost, balance)
            return 0 if cost <= balance else 1
        if cost > balance:
            self._refuse(todo, cost, balance)
            todo = []
        for spec in todo:
            self._prepare_entry(spec, retry=actions[spec.key] == "retry")
        with self._progress() as progress:
            self._upload(todo, progress)
            self._submit([s for s in todo if s.image is None or s.image.sha256 in self.image_urls], progress)
            follow = [s for s in specs if self._entry(s).job_id and actions[s.key] not in ("done", "failed")]
            self._follow(follow, progress)
        return self._summary(specs)

    # -- planning -------------------------------------------------------------------------------------------

    def _specs(self) -> list[JobSpec]:
        opts = self.opts
        prompts = read_prompts(opts.prompts_file)
        if opts.images_dir is None:
            return prompt_jobs(prompts, opts.model, opts.settings)
        images, skipped = scan_images(opts.images_dir)
        for item in skipped:
            self.console.print(f"[yellow]skipped {item.name}: {item.reason}[/yellow]")
        return job_matrix(images, prompts, opts.model, opts.settings, one_to_one=opts.one_to_one)

    def _entry(self, spec: JobSpec) -> Entry:
        entry = self.manifest.get(spec.key)
        if entry is None:
            entry = Entry(
                key=spec.key,
                image=spec.image_name,
                image_sha256=spec.image_sha256,
                prompt=spec.prompt,
                model=spec.model,
                settings=spec.settings,
            )
        return entry

    def _plan(self, spec: JobSpec) -> str:
        entry = self._entry(spec)
        if entry.state == "completed" and entry.file and (self.opts.output_dir / entry.file).exists():
            return "done"
        if entry.job_id and entry.state in ("failed", "canceled"):
            return "retry" if self.opts.retry_failed else "failed"
        return "follow" if entry.job_id else "submit"

    def _prepare_entry(self, spec: JobSpec, *, retry: bool) -> None:
        entry = self._entry(spec)
        if retry and entry.job_id:
            entry = entry.model_copy(
                update={
                    "attempt": entry.attempt + 1,
                    "previous_job_ids": [*entry.previous_job_ids, entry.job_id],
                    "job_id": None,
                    "state": "new",
                    "error": None,
                    "file": None,
                }
            )
        self.manifest.put(entry.model_copy(update={"image": spec.image_name}))

    def _body(self, spec: JobSpec, image_url: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model_id": spec.model, "prompt": spec.prompt, "settings": spec.settings}
        if image_url:
            body["image_url"] = image_url
        if self.opts.campaign_id:
            body["campaign_id"] = self.opts.campaign_id
        return body

    def _quote(self, spec: JobSpec) -> dict[str, Any]:
        """Price one job (every job of a run has the same model and settings, hence the same price)."""
        if spec.image is None:
            return self.api.quote(self._body(spec, None))
        target = self.api.upload_target(spec.image.path.read_bytes(), spec.image.content_type)
        return self.api.quote(self._body(spec, target["image_url"]))

    def _refuse(self, todo: list[JobSpec], cost: int, balance: int) -> None:
        self.refused = f"needs {cost} credits for {len(todo)} new jobs; the balance is {balance}"
        self.console.print(
            f"[red]Not enough credits: this run {self.refused}. Nothing new was submitted; "
            "buy credits or shorten the run, then run the same command again.[/red]"
        )
        for spec in todo:
            entry = self._entry(spec)
            if not entry.job_id:
                self.manifest.put(entry.model_copy(update={"state": "unpaid", "error": "not enough credits"}))

    def _print_plan(
        self,
        specs: list[JobSpec],
        actions: dict[str, str],
        quote: dict[str, Any] | None,
        cost: int,
        balance: int,
    ) -> None:
        table = Table(title=f"i2v bulk --dry-run: {len(specs)} jobs ({self.opts.model})")
        table.add_column("#")
        add_typed_column(table, "image", (spec.image_name for spec in specs))
        for column in ("prompt", "state", "credits"):
            table.add_column(column, overflow="fold")
        price = str(quote["credits"]) if quote else "-"
        for n, spec in enumerate(specs, 1):
            action = actions[spec.key]
            table.add_row(
                str(n),
                spec.image_name,
                _short(spec.prompt),
                _LABELS[action],
                price if action in ("submit", "retry") else "-",
            )
        self.out.print(table, crop=False)
        if quote:
            self.out.print(f"settings: {quote['settings']}")
        new = sum(1 for a in actions.values() if a in ("submit", "retry"))
        self.out.print(
            f"total: {cost} credits for {new} new jobs; balance {balance}; after {balance - cost}"
            + ("" if cost <= balance else "  [red](not enough credits)[/red]")
        )
        self.out.print("dry run: nothing was uploaded, submitted or charged")

    # -- uploads and submissions ----------------------------------------------------------------------------

    @contextmanager
    def _progress(self) -> Iterator[Progress]:
        columns = (
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            yield progress

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=max(1, self.opts.concurrency), thread_name_prefix="i2v-bulk")

    def _upload(self, todo: list[JobSpec], progress: Progress) -> None:
        images = {s.image.sha256: s.image for s in todo if s.image is not None}
        task = progress.add_task("uploads", total=len(images))

        def upload(sha: str) -> None:
            image = images[sha]
            try:
                self.image_urls[sha] = self.api.upload_bytes(image.path.read_bytes(), image.content_type)
            except (ApiError, OSError) as exc:
                for spec in todo:
                    if spec.image_sha256 == sha:
                        self.manifest.update(spec.key, state="error", error=f"upload failed: {exc}")
            progress.advance(task)

        _run_all(self._pool, upload, list(images))

    def _submit(self, todo: list[JobSpec], progress: Progress) -> None:
        task = progress.add_task("submitted", total=len(todo))

        def submit(spec: JobSpec) -> None:
            if self.refused:
                self.manifest.update(spec.key, state="unpaid", error=self.refused)
                progress.advance(task)
                return
            entry = self._entry(spec)
            key = spec.idempotency_key(entry.attempt)
            self.manifest.update(spec.key, state="submitting", idempotency_key=key, submitted_at=now_iso())
            try:
                url = self.image_urls[spec.image.sha256] if spec.image else None
                created = self.api.generate(self._body(spec, url), key)
            except ApiError as exc:
                if exc.code == "insufficient_credits":
                    self.refused = exc.message
                    self.manifest.update(spec.key, state="unpaid", error=exc.message)
                else:
                    self.manifest.update(spec.key, state="error", error=f"{exc.code}: {exc.message}")
            else:
                self.manifest.update(
                    spec.key,
                    state=created["status"],
                    job_id=str(created["job_id"]),
                    credits=created["credits_used"],
                    error=None,
                )
            progress.advance(task)

        _run_all(self._pool, submit, todo)

    # -- following jobs and downloading ---------------------------------------------------------------------

    def _follow(self, specs: list[JobSpec], progress: Progress) -> None:
        jobs_task = progress.add_task("jobs", total=len(specs))
        dl_task = progress.add_task("downloads", total=0)
        waiting = {s.key: s for s in specs}
        with self._pool() as polls, self._pool() as downloads:
            fetches: list[Future[None]] = []
            while waiting:
                started = time.monotonic()
                keys = list(waiting)
                for key, job in zip(keys, polls.map(self._poll, keys), strict=True):
                    if job is None or job["status"] in ("completed", "failed", "canceled"):
                        spec = waiting.pop(key)
                        progress.advance(jobs_task)
                        if job is not None and job["status"] == "completed":
                            progress.update(dl_task, total=len(fetches) + 1)
                            fetches.append(downloads.submit(self._download, spec, job, progress, dl_task))
                if waiting:
                    time.sleep(max(0.0, self.opts.poll_interval - (time.monotonic() - started)))
            for fetch in fetches:
                fetch.result()

    def _poll(self, key: str) -> dict[str, Any] | None:
        """The job's status, with non-completed outcomes recorded; None when it cannot be followed."""
        entry = self.manifest.get(key)
        assert entry is not None and entry.job_id
        try:
            job = self.api.status(entry.job_id)
        except ApiError as exc:
            self.manifest.update(key, state="error", error=f"{exc.code}: {exc.message}")
            return None
        if job["status"] in ("failed", "canceled"):
            self.manifest.update(
                key, state=job["status"], error=job.get("error_message"), finished_at=now_iso()
            )
        elif job["status"] != "completed" and job["status"] != entry.state:
            self.manifest.update(key, state=job["status"])
        return job

    def _download(self, spec: JobSpec, job: dict[str, Any], progress: Progress, task: TaskID) -> None:
        entry = self.manifest.get(spec.key)
        assert entry is not None and entry.job_id
        name = video_filename(entry.job_id, spec.model, job.get("created_at"))
        dest = self.opts.output_dir / name
        try:
            if not dest.exists():
                _, tagged = download_video(
                    self.api, job["video_url"], dest, video_tags(entry.job_id, spec.prompt)
                )
                self.untagged = self.untagged or not tagged
            finished = entry.finished_at or now_iso()
            entry = self.manifest.update(
                spec.key,
                state="completed",
                file=name,
                error=None,
                created_at=job.get("created_at"),
                finished_at=finished,
            )
            write_json_atomic(sidecar_path(dest), _sidecar(entry, spec, job))
        except (ApiError, OSError) as exc:
            self.manifest.update(spec.key, state="error", error=f"download failed: {exc}")
        progress.advance(task)

    # -- summary --------------------------------------------------------------------------------------------

    def _summary(self, specs: list[JobSpec]) -> int:
        table = Table(title=f"i2v bulk: {len(specs)} jobs ({self.opts.model})")
        entries = [self._entry(spec) for spec in specs]
        add_typed_column(table, "image", (spec.image_name for spec in specs))
        table.add_column("prompt", overflow="fold")
        add_typed_column(table, "job", (entry.job_id or "-" for entry in entries))
        for column in ("status", "credits"):
            table.add_column(column)
        table.add_column("file / error", overflow="fold")
        done = 0
        for spec in specs:
            entry = self._entry(spec)
            done += entry.state == "completed"
            table.add_row(
                spec.image_name,
                _short(spec.prompt),
                entry.job_id or "-",
                entry.state,
                "-" if entry.credits is None else str(entry.credits),
                entry.file if entry.state == "completed" else (entry.error or ""),
            )
        self.out.print(table, crop=False)
        self.out.print(f"{done} of {len(specs)} videos in {self.opts.output_dir}")
        if self.untagged:
            self.console.print(
                "[yellow]PyAV is not installed: videos were saved without metadata tags[/yellow]"
            )
        return 0 if done == len(specs) else 1


def _run_all(pool: Callable[[], ThreadPoolExecutor], fn: Callable[[Any], None], items: list[Any]) -> None:
    with pool() as executor:
        for future in [executor.submit(fn, item) for item in items]:
            future.result()


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _sidecar(entry: Entry, spec: JobSpec, job: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": entry.job_id,
        "prompt": spec.prompt,
        "model": spec.model,
        "settings": spec.settings,
        "image": {"name": spec.image_name, "sha256": spec.image_sha256 or None},
        "credits": entry.credits if entry.credits is not None else job.get("credits_used"),
        "idempotency_key": entry.idempotency_key,
        "file": entry.file,
        "created_at": job.get("created_at"),
        "finished_at": job.get("updated_at") or entry.finished_at,
        "submitted_at": entry.submitted_at,
        "downloaded_at": now_iso(),
    }


def run_bulk(api: I2VClient, opts: BulkOptions, console: Console, out: Console) -> int:
    """Run ``i2v bulk``; return the exit code."""
    return BulkRun(api, opts, console, out).run()
