"""Request and response bodies of the public API (pydantic; inputs forbid unknown fields)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


# The database's job_status enum, value for value (tests/test_layout.py holds the two equal).
class JobStatus(StrEnum):
    """A job's status: pending, then processing, then one of completed, failed or canceled."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


#: The statuses of a job that is not finished: it may still change, be canceled, or be asked about.
ACTIVE_STATUSES = frozenset({JobStatus.PENDING, JobStatus.PROCESSING})


class VideoSettings(BaseModel):
    """Output settings; each model lists the values it allows (see list-models)."""

    model_config = ConfigDict(extra="allow")
    resolution: str | None = Field(default=None, description="auto|480p|720p|1080p (per model)")
    aspect_ratio: str | None = Field(default=None, description="auto|16:9|9:16|1:1 (per model)")
    duration: int | None = Field(default=None, description="seconds (per model)", strict=True)


class GenerateVideoRequest(BaseModel):
    """Body of POST generate-video."""

    model_config = ConfigDict(extra="forbid")
    user_id: UUID | None = Field(default=None, description="optional; must equal the token's user")
    model_id: str = Field(min_length=1, max_length=200, description="model uuid or slug")
    prompt: str = Field(default="", max_length=4000)
    image_url: str | None = Field(default=None, max_length=4096)
    image_id: UUID | None = Field(
        default=None,
        description="an image you generated (generate-image): the start image, instead of image_url",
    )
    video_id: UUID | None = Field(
        default=None,
        description="a video you generated: its last frame is the start image (continue the shot)",
    )
    settings: VideoSettings = Field(default_factory=VideoSettings)
    campaign_id: UUID | None = Field(
        default=None,
        description="one of your campaigns: the job counts against its budget and shows in its spend",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="https URL sent a signed event (Standard Webhooks) on each change of the job's status",
    )


class ImageSettings(BaseModel):
    """Image output settings; each model lists the values it allows (see list-models)."""

    model_config = ConfigDict(extra="allow")
    aspect_ratio: str | None = Field(default=None, description="auto|1:1|16:9|9:16|... (per model)")
    output_format: str | None = Field(default=None, description="jpeg|png")
    num_images: int | None = Field(default=None, description="images to make (per model)", strict=True)


class GenerateImageRequest(BaseModel):
    """Body of POST generate-image: text to image, or an edit of reference images."""

    model_config = ConfigDict(extra="forbid")
    model_id: str = Field(min_length=1, max_length=200, description="model uuid or slug")
    prompt: str = Field(min_length=1, max_length=4000)
    image_ids: list[UUID] = Field(
        default_factory=list, max_length=14, description="images you generated, as references to edit"
    )
    image_urls: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list,
        max_length=14,
        description="uploads (create-upload-url) or public URLs, as references",
    )
    video_id: UUID | None = Field(
        default=None, description="a video you generated: its last frame, as a reference"
    )
    settings: ImageSettings = Field(default_factory=ImageSettings)
    campaign_id: UUID | None = Field(
        default=None,
        description="one of your campaigns: the job counts against its budget and shows in its spend",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="https URL sent a signed event (Standard Webhooks) on each change of the job's status",
    )


class GenerateVideoResponse(BaseModel):
    """A job was created (or replayed for the same Idempotency-Key)."""

    job_id: UUID
    status: JobStatus
    credits_used: int


class ImageOut(BaseModel):
    """One image a job made: its id (for image_id / image_ids in later requests) and a download URL."""

    image_id: UUID
    url: str
    content_type: str
    width: int | None = None
    height: int | None = None


class VideoStatus(BaseModel):
    """Body of GET get-video-status."""

    job_id: UUID
    status: JobStatus
    video_url: str | None = None
    thumbnail_url: str | None = None
    error_message: str | None = None
    progress: float | None = None
    queue_position: int | None = None
    logs: list[str] | None = None
    model: str | None = None
    kind: Literal["video", "image"] = "video"
    stage: Literal["image", "video"] | None = Field(
        default=None, description="a video from a prompt alone: making its start image, then the video"
    )
    images: list[ImageOut] | None = Field(default=None, description="an image job's images, once completed")
    provider: str | None = Field(default=None, description="the provider that runs the job")
    credits_used: int | None = None
    campaign_id: UUID | None = None
    client_id: UUID | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CancelVideoRequest(BaseModel):
    """Body of POST cancel-video."""

    model_config = ConfigDict(extra="forbid")
    job_id: UUID


class CreateUploadRequest(BaseModel):
    """Body of POST create-upload-url."""

    model_config = ConfigDict(extra="forbid")
    content_type: Literal["image/jpeg", "image/png", "image/webp"]
    size: int = Field(gt=0, strict=True)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class CreateUploadResponse(BaseModel):
    """Either the content is already stored, or where to PUT it."""

    image_url: str
    already_uploaded: bool = False
    upload_url: str | None = None
    upload_method: str | None = None
    upload_headers: dict[str, str] | None = None
    expires_at: datetime | None = None


class LedgerEntry(BaseModel):
    """One credit movement."""

    id: int
    delta: int
    kind: str
    reason: str | None = None
    job_id: UUID | None = None
    created_at: datetime


class Credits(BaseModel):
    """Body of GET get-credits."""

    balance: int
    debt: int = 0
    """Credits owed after a refunded purchase whose credits were spent; new generations wait until it is 0."""
    entries: list[LedgerEntry]


class RouteInfo(BaseModel):
    """One provider that can run a model: its endpoint, whether it can take jobs now, its options and price."""

    provider: str
    endpoint: str
    available: bool
    unavailable_reason: str | None = None
    extra_options: list[str]
    text_only: bool = Field(
        default=False,
        description="it makes a video from the prompt alone: a prompt-only request is sent to it directly, with no"
        " start image made first",
    )
    price: dict[str, Any]
    notes: str | None = None


class ModelInfo(BaseModel):
    """One entry of GET list-models."""

    id: UUID
    slug: str
    name: str
    provider: str = Field(description="the provider a request with default settings would use now")
    routes: list[RouteInfo] = Field(description="every provider of the model, in order of preference")
    kind: str
    available: bool
    unavailable_reason: str | None = None
    requires_image: bool
    resolutions: list[str]
    aspect_ratios: list[str]
    durations: list[int]
    output_formats: list[str] = Field(default_factory=list, description="image models: jpeg, png")
    max_images: int = Field(default=0, description="image models: the most images one request may ask for")
    max_input_images: int = Field(
        default=0, description="image models: the most reference images an edit takes"
    )
    defaults: dict[str, Any]
    extra_options: list[str]
    price: dict[str, Any] = Field(description="the credits charged at the provider used now, per setting")
    notes: str | None = None


class ModelList(BaseModel):
    """Body of GET list-models."""

    models: list[ModelInfo]


class Health(BaseModel):
    """Body of GET health."""

    status: Literal["ok"]


class VideoSummary(VideoStatus):
    """One job of GET list-videos: its status plus what was asked for."""

    prompt: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)


class JobList(BaseModel):
    """Body of GET list-jobs: one page of jobs (videos and images), newest first."""

    jobs: list[VideoSummary]
    next_cursor: str | None = None


class VideoList(BaseModel):
    """Body of GET list-videos: one page, newest first."""

    videos: list[VideoSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class JobCounts(BaseModel):
    """Body of GET status: the caller's jobs counted by status."""

    counts: dict[JobStatus, int]
    total: int


class Quote(BaseModel):
    """Body of POST quote: what generate-video would charge for the same body."""

    model: str
    provider: str = Field(description="the provider that would serve the request now (its price is quoted)")
    parts: dict[str, int] | None = Field(
        default=None, description="a video from a prompt alone: the start image's and the video's credits"
    )
    credits: int
    balance: int
    balance_after: int = Field(description="balance - credits; negative when the balance does not cover it")
    campaign_budget_remaining: int | None = Field(
        default=None,
        description="with campaign_id: what is left of its budget (null: no budget, or no campaign)",
    )
    campaign_budget_after: int | None = Field(
        default=None,
        description="campaign_budget_remaining - credits; negative when the budget does not cover it",
    )
    settings: dict[str, Any]
