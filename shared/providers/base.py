"""The provider contract every video backend meets (the local engine, fal, Replicate).

A provider takes a job (``submit``, with the webhook URL carrying our job id), answers about it (``status``,
``result``), stops it (``cancel``) and turns its own webhook deliveries into one provider-neutral
``ProviderUpdate`` (``parse_webhook``, which verifies the signature over the raw body first). The job service
applies updates: queued, running (progress, queue position, logs), succeeded (output URLs to mirror, or files
already on disk) and failed (a message and a kind). Providers never import the job service; an in-process
provider (the local engine) reports through an ``UpdateSink`` it is given when it starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol
from uuid import UUID

from shared import errors
from shared.providers.catalog import ModelSpec, Route


@dataclass(frozen=True)
class JobRequest:
    """What a provider needs to start one job."""

    job_id: UUID
    user_id: UUID
    model: ModelSpec
    route: Route  # the model's route at this provider: endpoint, input mapping, output path
    prompt: str
    image_url: str | None
    settings: dict[str, Any]
    input_images: tuple[str, ...] = ()  # an image edit's reference images (our storage URLs or public ones)

    @property
    def endpoint(self) -> str:
        """The provider endpoint this job goes to (an image edit may have its own)."""
        return self.route.endpoint_for(self.input_images)


@dataclass(frozen=True)
class Submission:
    """What the provider told us when it accepted a job."""

    request_id: str | None = None
    urls: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobRef:
    """A submitted job as a provider needs to ask about it: our id, its model, the provider's id and URLs."""

    job_id: UUID
    user_id: UUID
    model: ModelSpec
    route: Route
    request_id: str
    urls: Mapping[str, str] = field(default_factory=dict)


class UpdateKind(StrEnum):
    """What a provider says about a job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"  # the provider does not know the job (yet, or any more)


@dataclass(frozen=True)
class OutputFiles:
    """A finished job's files already on this machine (the local engine): a video with its thumbnail, or the
    images of an image job, and facts about them."""

    video: Path | None
    thumbnail: Path | None
    facts: dict[str, Any] = field(default_factory=dict)
    images: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ProviderUpdate:
    """One provider-neutral piece of news about a job, from a webhook, a poll or an in-process render."""

    kind: UpdateKind
    request_id: str | None = None  # the provider's id for the job, when the news names it
    progress: float | None = None
    queue_position: int | None = None
    logs: tuple[dict[str, Any], ...] = ()
    output: Any = None  # the provider's own output document (its video URL is found by the catalog row)
    files: OutputFiles | None = None
    message: str | None = None
    failure_kind: Literal["provider", "input", "deadline", "submit"] = "provider"

    @property
    def terminal(self) -> bool:
        """True for news that ends the job."""
        return self.kind in (UpdateKind.SUCCEEDED, UpdateKind.FAILED, UpdateKind.CANCELED)


class UpdateSink(Protocol):
    """Where an in-process provider reports its jobs (the job service applies what it is told)."""

    def __call__(self, job_id: UUID, update: ProviderUpdate) -> Any:
        """Apply one update to one job."""


CancelAnswer = Literal["requested", "already_completed", "not_found"]


class Provider(ABC):
    """One video backend."""

    name: ClassVar[str]
    #: True when accepting a job takes a remote call (the idempotency key stays in progress until it returns,
    #: and the reconciler watches its jobs for lost webhooks).
    remote_submit: ClassVar[bool] = False

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when the provider can take jobs, else why not (shown in list-models)."""

    @abstractmethod
    def submit(self, job: JobRequest) -> Submission:
        """Hand a job to the provider; raise ``ProviderError`` subclasses on failure (``SubmitOutcomeUnknown``
        when the request may have reached it)."""

    def status(self, job: JobRef) -> ProviderUpdate:
        """What the provider says about a submitted job now (a succeeded update may lack its output: ``result``)."""
        raise errors.ProviderError(f"{self.name} cannot be asked about a job", provider=self.name)

    def result(self, job: JobRef) -> ProviderUpdate:
        """The outcome of a finished job: succeeded with its output, or failed with the provider's message."""
        raise errors.ProviderError(f"{self.name} has no result to fetch", provider=self.name)

    def cancel(self, job: JobRef) -> CancelAnswer:
        """Ask the provider to stop a job; says whether it was accepted, too late, or unknown."""
        return "requested"

    def job_canceled(self, job_id: UUID) -> None:  # noqa: B027  (a no-op unless the provider renders in-process)
        """The job was canceled on our side: stop any work on it now."""

    def find_submission(
        self, job: JobRequest, since: datetime, taken: Callable[[str], bool] = lambda _: False
    ) -> Submission | None:
        """A submission of this job the provider received but we never recorded (a crash between submitting and
        recording, or an answer that never came), made after ``since`` and not ``taken`` by another job. None
        when the provider has none or cannot be asked."""
        return None

    def output_headers(self, url: str) -> dict[str, str]:
        """Headers to send when downloading one of the provider's output files (e.g. its API token)."""
        return {}

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> ProviderUpdate:
        """Verify a delivery over its raw bytes (``InvalidSignature`` when it does not verify) and read it."""
        raise errors.NotFound(f"{self.name} sends no webhooks.")
