"""The provider contract every video backend meets (the local engine, fal, later Replicate)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

from shared.providers.catalog import ModelSpec


@dataclass(frozen=True)
class JobRequest:
    """What a provider needs to start one job."""

    job_id: UUID
    user_id: UUID
    model: ModelSpec
    prompt: str
    image_url: str | None
    settings: dict[str, Any]


@dataclass(frozen=True)
class Submission:
    """What the provider told us when it accepted a job."""

    request_id: str | None = None
    urls: dict[str, str] = field(default_factory=dict)


class Provider(ABC):
    """One video backend."""

    name: ClassVar[str]
    #: True when accepting a job takes a remote call, so the idempotency key stays in progress until it returns.
    remote_submit: ClassVar[bool] = False

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when the provider can take jobs, else why not (shown in list-models)."""

    @abstractmethod
    def submit(self, job: JobRequest) -> Submission:
        """Hand a job to the provider; raise ``ProviderError`` subclasses on failure."""
