"""``i2v mcp``: a stdio MCP server that lets agents quote, confirm, submit, follow and fetch i2v videos.

It is a client of the public HTTP API (``I2V_API_URL``, ``I2V_TOKEN``), built on the official ``mcp`` SDK.
Money safety: ``generate_video`` submits only with ``confirm=true`` after the same arguments were quoted in this
session (by ``quote_video``, or by ``generate_video`` without ``confirm``), and its Idempotency-Key is derived
from the arguments (image content or URL, prompt, model, settings) plus an optional ``request_id``, so an
agent's retry of the same call replays the first job instead of paying twice.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field

from client.api import ApiError, I2VClient
from client.bulk_inputs import sniff_content_type
from client.media import download_video, video_filename, video_tags
from client.single import default_image_model

WAIT_LIMIT_S = 50.0
ImageRef = Annotated[
    str,
    Field(
        description="a local image file path (uploaded for free), an http(s) URL, an image id from "
        "generate_image, 'video:<job id>' to continue a video from its last frame, or '' for the prompt alone"
    ),
]
Prompt = Annotated[str, Field(description="what the camera or scene should do")]
ModelSlug = Annotated[str, Field(description="a model slug from list_models, e.g. local-motion")]
ImagePrompt = Annotated[
    str, Field(description="what the image should show (or how to change the references)")
]
ImageModel = Annotated[
    str | None,
    Field(
        description="an image model slug from list_models; default nano-banana, or where this server cannot"
        " run it its first available image model"
    ),
]
References = Annotated[
    list[str] | None,
    Field(description="images to edit: local file paths, http(s) URLs or image ids from earlier jobs"),
]
CampaignId = Annotated[
    str | None, Field(description="optional; one of your campaign ids: the job counts against its budget")
]
_TERMINAL = ("completed", "failed", "canceled")
_MODEL_FIELDS = (
    "slug",
    "name",
    "available",
    "unavailable_reason",
    "requires_image",
    "resolutions",
    "aspect_ratios",
    "durations",
    "defaults",
    "extra_options",
    "price",
    "notes",
)
INSTRUCTIONS = (
    "Image-to-video generation billed in credits. Flow: list_models for the allowed settings; quote_video to "
    "learn the price; ask the user to confirm; generate_video with the same arguments and confirm=true; "
    "wait_for_video (repeat until done); download_video. Retrying generate_video with the same arguments (and "
    "request_id) never charges twice; pass a new request_id to make another video from the same arguments."
)


class VideoSettings(BaseModel):
    """Output settings; list_models gives each model's allowed values (omitted ones take the model default)."""

    model_config = ConfigDict(extra="allow")
    resolution: str | None = Field(default=None, description="e.g. 480p, 720p, 1080p, auto")
    aspect_ratio: str | None = Field(default=None, description="e.g. 16:9, 9:16, 1:1, auto")
    duration: int | None = Field(default=None, description="seconds")


class ImageSettings(BaseModel):
    """Image settings; list_models gives each image model's allowed values."""

    model_config = ConfigDict(extra="allow")
    aspect_ratio: str | None = Field(default=None, description="e.g. 1:1, 16:9, 9:16, auto")
    output_format: str | None = Field(default=None, description="jpeg or png")
    num_images: int | None = Field(default=None, description="how many images")


class I2VTools:
    """The tools, over one API client."""

    def __init__(self, api: I2VClient) -> None:
        self.api = api
        self._quoted: set[str] = set()
        self._lock = threading.Lock()

    def list_models(self) -> dict[str, Any]:
        """List the video models with their allowed resolutions, aspect ratios, durations, defaults and price."""
        with _tool_errors():
            return {"models": [{k: m.get(k) for k in _MODEL_FIELDS} for m in self.api.list_models()]}

    def quote_video(
        self,
        image: ImageRef,
        prompt: Prompt,
        model: ModelSlug,
        settings: VideoSettings | None = None,
        campaign_id: CampaignId = None,
    ) -> dict[str, Any]:
        """Price a video without charging: the credits it costs, the balance and the balance after."""
        with _tool_errors():
            body, identity = self._request(image, prompt, model, settings, campaign_id)
            quote = self.api.quote(body)
        self._remember(identity)
        return {**quote, "next_step": "confirm with the user, then call generate_video with confirm=true"}

    def generate_video(
        self,
        image: ImageRef,
        prompt: Prompt,
        model: ModelSlug,
        settings: VideoSettings | None = None,
        campaign_id: CampaignId = None,
        confirm: Annotated[
            bool, Field(description="true only after the user accepted the quoted price")
        ] = False,
        request_id: Annotated[
            str | None, Field(description="optional; a new value makes another video from the same arguments")
        ] = None,
    ) -> dict[str, Any]:
        """Start a video job (charged). Needs confirm=true after a quote of the same arguments.

        Without confirm it only quotes and refuses. The same arguments and request_id always name the same job:
        retrying is safe; use a new request_id for another video from identical arguments.
        """
        with _tool_errors():
            body, identity = self._request(image, prompt, model, settings, campaign_id)
            if not confirm:
                quote = self.api.quote(body)
                self._remember(identity)
                raise ToolError(
                    f"Not submitted: this video costs {quote['credits']} credits (balance {quote['balance']}, "
                    f"after {quote['balance_after']}). Ask the user to confirm, then call generate_video again "
                    "with the same arguments and confirm=true."
                )
            if not self._was_quoted(identity):
                raise ToolError(
                    "Quote first: call quote_video with the same arguments, confirm the price with the user, "
                    "then call generate_video with confirm=true."
                )
            key = "i2v-mcp-" + hashlib.sha256(f"{identity}\n{request_id or ''}".encode()).hexdigest()[:48]
            created = self.api.generate(body, key)
        return {**created, "idempotency_key": key, "next_step": "call wait_for_video with this job_id"}

    def list_jobs(
        self,
        kind: Literal["video", "image"] | None = None,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The caller's jobs, newest first: videos and images (or one ``kind``), optionally of one ``status``
        (pending, processing, completed, failed, canceled). A video's job_id continues it (``video:<job_id>``);
        an image's image_id starts a video. Pass ``next_cursor`` back as ``cursor`` for the next page."""
        with _tool_errors():
            return self.api.list_jobs(kind, status, max(1, min(limit, 200)), cursor)

    def list_campaigns(self, include_archived: bool = False) -> dict[str, Any]:
        """Your clients' campaigns (active ones unless include_archived), newest first, each with its client's
        name and what is left of its budget (null: no limit): pass a campaign_id to quote_video, generate_video
        or the image tools to bill a job to it."""
        with _tool_errors():
            clients = {c["id"]: c["name"] for c in self.api.team_call("GET", "list-clients")["clients"]}
            params = None if include_archived else {"archived": "false"}
            campaigns = self.api.team_call("GET", "list-campaigns", params=params)["campaigns"]
        return {
            "campaigns": [
                {
                    "campaign_id": c["id"],
                    "name": c["name"],
                    "client_id": c["client_id"],
                    "client": clients.get(c["client_id"]),
                    "budget_credits": c["budget_credits"],
                    "budget_remaining": c["budget_remaining"],
                    "archived": c["archived"],
                }
                for c in campaigns
            ]
        }

    def get_video_status(self, job_id: str) -> dict[str, Any]:
        """The job's status, progress, error and (once completed) video and thumbnail URLs."""
        with _tool_errors():
            return self.api.status(job_id)

    async def wait_for_video(
        self, job_id: str, ctx: Context, timeout_seconds: float = 45.0
    ) -> dict[str, Any]:
        """Wait for a job to finish, reporting progress; returns within ~50 s with the current status.

        ``done`` is false when it returned before the job finished: call it again.
        """
        limit = min(max(timeout_seconds, 1.0), WAIT_LIMIT_S)
        deadline = time.monotonic() + limit
        last = -1.0
        while True:
            with _tool_errors():
                job = await anyio.to_thread.run_sync(self.api.status, job_id)
            percent = 100.0 if job["status"] == "completed" else round(100 * (job.get("progress") or 0.0), 1)
            if percent > last:
                await ctx.report_progress(percent, 100.0, f"{job['status']} {percent:.0f}%")
                last = percent
            if job["status"] in _TERMINAL:
                return {**job, "done": True}
            if time.monotonic() + 1.0 > deadline:
                return {**job, "done": False, "next_step": "still running: call wait_for_video again"}
            await anyio.sleep(1.0)

    def cancel_video(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or processing job; its credits are refunded."""
        with _tool_errors():
            return self.api.cancel(job_id)

    def get_credits(self, limit: int = 10) -> dict[str, Any]:
        """The credit balance and the most recent ledger entries."""
        with _tool_errors():
            return self.api.credits(limit=max(1, min(limit, 200)))

    def download_video(self, job_id: str, path: str) -> dict[str, Any]:
        """Download a completed video to ``path`` (a file, or an existing directory to name it in)."""
        with _tool_errors():
            job = self.api.status(job_id)
            if job["status"] != "completed":
                raise ToolError(f"Job {job_id} is {job['status']}, not completed; call wait_for_video first.")
            dest = Path(path).expanduser()
            if dest.is_dir() or path.endswith(("/", "\\")):
                dest = dest / video_filename(job_id, job.get("model") or "video", job.get("created_at"))
            try:
                saved, _ = download_video(self.api, job["video_url"], dest, video_tags(job_id, None))
            except OSError as exc:
                raise ToolError(f"Cannot write {dest}: {exc.strerror or exc}") from exc
        return {"job_id": job_id, "path": str(saved.resolve()), "bytes": saved.stat().st_size}

    def _request(
        self,
        image: str,
        prompt: str,
        model: str,
        settings: VideoSettings | None,
        campaign_id: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """The generate-video body and an identity of the arguments (the image by content, not by path)."""
        values = settings.model_dump(exclude_none=True) if settings else {}
        body: dict[str, Any] = {"model_id": model, "prompt": prompt, "settings": values}
        image_id = image
        if image.startswith("video:"):
            body["video_id"] = image.removeprefix("video:")
        elif _is_uuid(image):
            body["image_id"] = image
        elif image.startswith(("http://", "https://")):
            body["image_url"] = image
        elif image:
            body["image_url"], image_id = self._upload(image)
        parts: list[Any] = [image_id, prompt, model, values]
        if campaign_id:
            body["campaign_id"] = campaign_id
            parts.append(campaign_id)
        identity = json.dumps(parts, sort_keys=True, separators=(",", ":"))
        return body, identity

    def quote_image(
        self,
        prompt: ImagePrompt,
        model: ImageModel = None,
        references: References = None,
        settings: ImageSettings | None = None,
    ) -> dict[str, Any]:
        """Price an image job without charging: the credits it costs, the balance and the balance after."""
        with _tool_errors():
            body, identity = self._image_request(prompt, model, references, settings)
            quote = self.api.quote_image(body)
        self._remember(identity)
        return {**quote, "next_step": "confirm with the user, then call generate_image with confirm=true"}

    def generate_image(
        self,
        prompt: ImagePrompt,
        model: ImageModel = None,
        references: References = None,
        settings: ImageSettings | None = None,
        confirm: Annotated[
            bool, Field(description="true only after the user accepted the quoted price")
        ] = False,
        request_id: Annotated[
            str | None, Field(description="optional; a new value makes another job from the same arguments")
        ] = None,
    ) -> dict[str, Any]:
        """Start an image job (charged). Needs confirm=true after quote_image of the same arguments; follow it
        with wait_for_video: once completed, its images carry image ids usable as references and as a video's
        start image."""
        with _tool_errors():
            body, identity = self._image_request(prompt, model, references, settings)
            if not confirm or not self._was_quoted(identity):
                quote = self.api.quote_image(body)
                self._remember(identity)
                raise ToolError(
                    f"Not submitted: these images cost {quote['credits']} credits (balance {quote['balance']}). "
                    "Ask the user to confirm, then call generate_image again with the same arguments and "
                    "confirm=true."
                )
            key = (
                "i2v-mcp-image-" + hashlib.sha256(f"{identity}\n{request_id or ''}".encode()).hexdigest()[:40]
            )
            created = self.api.generate_image(body, key)
        return {**created, "idempotency_key": key, "next_step": "call wait_for_video with this job_id"}

    def _image_request(
        self, prompt: str, model: str | None, references: list[str] | None, settings: ImageSettings | None
    ) -> tuple[dict[str, Any], str]:
        """The generate-image body and an identity of the arguments (files by content, not by path)."""
        model = model or default_image_model(self.api.list_models())
        values = settings.model_dump(exclude_none=True) if settings else {}
        body: dict[str, Any] = {"model_id": model, "prompt": prompt, "settings": values}
        ids, urls, names = [], [], []
        for ref in references or []:
            try:
                ids.append(str(uuid.UUID(ref)))
                names.append(ids[-1])
            except ValueError:
                if ref.startswith(("http://", "https://")):
                    urls.append(ref)
                    names.append(ref)
                else:
                    url, content = self._upload(ref)
                    urls.append(url)
                    names.append(content)
        if ids:
            body["image_ids"] = ids
        if urls:
            body["image_urls"] = urls
        identity = json.dumps(["image", names, prompt, model, values], sort_keys=True, separators=(",", ":"))
        return body, identity

    def _upload(self, image: str) -> tuple[str, str]:
        path = Path(image).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ToolError(f"Cannot read the image {path}: {exc.strerror or exc}.") from exc
        content_type = sniff_content_type(data)
        if content_type is None:
            raise ToolError(f"{path} is not a JPEG, PNG or WebP image.")
        return self.api.upload_bytes(data, content_type), "sha256:" + hashlib.sha256(data).hexdigest()

    def _remember(self, identity: str) -> None:
        with self._lock:
            self._quoted.add(identity)

    def _was_quoted(self, identity: str) -> bool:
        with self._lock:
            return identity in self._quoted


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn API errors into tool errors an agent can act on."""
    try:
        yield
    except ApiError as exc:
        raise ToolError(_explain(exc)) from exc


def _explain(exc: ApiError) -> str:
    details = exc.details
    allowed = ", ".join(map(str, details.get("allowed") or []))
    if exc.code == "insufficient_credits":
        return f"Insufficient credits: {exc.message} Or pick cheaper settings (quote_video prices them)."
    if exc.code == "unknown_model":
        return f"Unknown model: {exc.message} Models: {allowed}."
    if details.get("field"):
        hint = f" Allowed values: {allowed}." if allowed else ""
        return f"Invalid {details['field']}: {exc.message}{hint}"
    return f"{exc.code}: {exc.message}"


def build_server(api: I2VClient) -> MCPServer[Any]:
    """The MCP server with every i2v tool registered."""
    tools = I2VTools(api)
    server: MCPServer[Any] = MCPServer("i2v", instructions=INSTRUCTIONS)
    for fn in (
        tools.list_models,
        tools.quote_video,
        tools.generate_video,
        tools.quote_image,
        tools.generate_image,
        tools.list_jobs,
        tools.list_campaigns,
        tools.get_video_status,
        tools.wait_for_video,
        tools.cancel_video,
        tools.get_credits,
        tools.download_video,
    ):
        server.add_tool(fn, name=fn.__name__, description=inspect.cleandoc(fn.__doc__ or ""))
    return server


def serve(api_url: str, token: str) -> None:
    """Serve the tools over stdio until the client disconnects."""
    with I2VClient(api_url, token) as api:
        build_server(api).run("stdio")
