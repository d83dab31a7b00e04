"""Video jobs: start a billed generation, read status, finish from provider output, fail with refund."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from shared import errors, ratelimit
from shared.auth import User
from shared.billing import ledger as credits
from shared.db import get_db
from shared.jobs import lifecycle, routing
from shared.jobs.refusals import REFUSALS as _REFUSALS
from shared.media import images
from shared.media.storage import get_storage
from shared.media.uploads import GENERATED_PREFIX, UploadKey
from shared.providers import registry
from shared.providers.base import JobRequest, Provider
from shared.providers.catalog import ModelSpec, Route, all_models, find_model
from shared.providers.registry import get_provider
from shared.records import Job, load_job
from shared.schemas import GenerateImageRequest, GenerateVideoRequest, ImageOut, JobStatus, VideoStatus
from shared.settings import get_settings

log = logging.getLogger("i2v.jobs")
ENDPOINT = "POST /functions/v1/generate-video"
IMAGE_ENDPOINT = "POST /functions/v1/generate-image"
RATE_LIMIT_NAME = "generate-video"
IMAGE_RATE_LIMIT_NAME = "generate-image"
_SUBMIT_HOLD_S = 60


@dataclass(frozen=True)
class Outcome:
    """The HTTP answer to a generate-video or generate-image request."""

    status: int
    body: dict[str, Any]
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def reply_headers(self) -> dict[str, str]:
        """The answer's headers: rate-limit state (a replay says Idempotent-Replayed instead) and the Location
        of the job's get-video-status."""
        headers = {"Idempotent-Replayed": "true"} if self.replayed else dict(self.headers)
        if self.body.get("job_id"):
            headers["Location"] = f"/functions/v1/get-video-status?job_id={self.body['job_id']}"
        return headers


def fingerprint(body: Any, endpoint: str = ENDPOINT) -> str:
    """SHA-256 of the canonical JSON of a request body (sorted keys, no whitespace)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def allowed_settings(spec: ModelSpec) -> dict[str, list[Any]]:
    """The settings every request to the model resolves, with their allowed values."""
    if spec.makes_images:
        return {
            "aspect_ratio": list(spec.aspect_ratios),
            "output_format": list(spec.output_formats),
            "num_images": list(range(1, spec.max_images + 1)),
        }
    return {
        "resolution": list(spec.resolutions),
        "aspect_ratio": list(spec.aspect_ratios),
        "duration": list(spec.durations),
    }


def resolve_settings(spec: ModelSpec, requested: dict[str, Any]) -> dict[str, Any]:
    """The model's defaults overlaid with the request's settings, each checked against the allowed values."""
    allowed = allowed_settings(spec)
    resolved: dict[str, Any] = {}
    for name, values in allowed.items():
        value = requested.get(name)
        value = spec.defaults.get(name) if value is None else value
        if value not in values:
            raise errors.InvalidField(
                f"settings.{name}", f"{spec.slug} does not support {name} {value!r}.", allowed=values
            )
        resolved[name] = value
    for name, value in requested.items():
        if name in allowed or value is None:
            continue
        if name not in spec.extra_options:
            raise errors.InvalidField(
                f"settings.{name}",
                f"{spec.slug} has no option {name!r}.",
                allowed=sorted([*allowed, *spec.extra_options]),
            )
        spec.extra_options[name].check(name, value)
        resolved[name] = value
    return resolved


def check_model(spec: ModelSpec) -> None:
    """Refuse a model that is switched off in the catalog."""
    if not spec.available:
        raise errors.ModelUnavailable(
            spec.unavailable_reason or f"{spec.slug} is not available.", model=spec.slug
        )


@dataclass(frozen=True)
class Prepared:
    """A validated generate-video request: the model, the route that will serve it, its resolved settings and
    the price at that route."""

    spec: ModelSpec
    route: Route
    provider: Provider
    settings: dict[str, Any]
    cost: int
    upload_sha: str | None
    image_url: str | None = None  # the start image (a video), image_id resolved
    input_images: tuple[str, ...] = ()  # the reference images (an image edit), image_ids resolved
    stage: ImageStage | None = None  # a video from a prompt alone: its start image is made first


@dataclass(frozen=True)
class ImageStage:
    """The first stage of a video from a prompt alone: the image model, its route, settings and price; then the
    video's own route."""

    spec: ModelSpec
    route: Route
    settings: dict[str, Any]
    cost: int
    video_route: Route
    video_cost: int


def prepare(user: User, req: GenerateVideoRequest) -> Prepared:
    """Validate a request against the model (before any charge) and price it."""
    if req.user_id is not None and req.user_id != user.id:
        raise errors.Forbidden("user_id does not match the token's user.", field="user_id")
    spec = find_model(req.model_id)
    if spec.makes_images:
        raise errors.InvalidField(
            "model_id", f"{spec.slug} makes images: use generate-image.", allowed=_video_models()
        )
    check_model(spec)
    requested = req.settings.model_dump(exclude_none=True)
    image_model = requested.pop("image_model", None)
    resolved = resolve_settings(spec, requested)
    if sum(x is not None and x != "" for x in (req.image_url, req.image_id, req.video_id)) > 1:
        raise errors.InvalidField("image_id", "Give one of image_url, image_id and video_id.")
    image_url = req.image_url
    if req.image_id:
        image_url = image_ref_urls(user, [req.image_id], "image_id")[0]
    elif req.video_id:
        image_url = last_frame_url(user, req.video_id)
    if not image_url and spec.requires_image:
        return _prepare_from_prompt(spec, resolved, image_model, req.prompt)
    if image_model is not None:
        raise errors.InvalidField("settings.image_model", "image_model is for a video from a prompt alone.")
    upload_sha = _check_image(user, spec, image_url)
    route = routing.choose(spec, resolved).route
    cost = price(route, resolved)
    return Prepared(spec, route, get_provider(route.provider), resolved, cost, upload_sha, image_url)


def _prepare_from_prompt(
    spec: ModelSpec, resolved: dict[str, Any], image_model: Any, prompt: str
) -> Prepared:
    """A video from a prompt alone: sent as it is to a route that takes a prompt alone (catalog ``text_only``)
    unless settings.image_model asks for a start image; otherwise its start image is made first by the model's
    image model (or settings.image_model), at that model's price, and one charge covers both."""
    if not prompt.strip():
        raise errors.InvalidField(
            "image_url", f"{spec.slug} needs an image_url, an image_id, a video_id or a prompt."
        )
    image_models = _image_models()
    if image_model is not None and not isinstance(image_model, str):
        raise errors.InvalidField(
            "settings.image_model", "image_model must be an image model's slug.", allowed=image_models
        )
    if image_model is not None and image_model not in image_models:
        raise errors.InvalidField(
            "settings.image_model", f"No image model is called {image_model!r}.", allowed=image_models
        )
    direct = None if image_model is not None else routing.text_only_route(spec, resolved)
    if direct is not None:  # the model's own text-to-video: no start image to make
        return Prepared(spec, direct, get_provider(direct.provider), resolved, price(direct, resolved), None)
    image_spec = find_model(image_model or spec.image_model)
    check_model(image_spec)
    aspect = resolved.get("aspect_ratio")
    wanted = {"aspect_ratio": aspect if aspect in image_spec.aspect_ratios else None, "num_images": 1}
    image_settings = resolve_settings(image_spec, {k: v for k, v in wanted.items() if v is not None})
    image_route = routing.choose(image_spec, image_settings).route
    video_route = routing.choose(spec, resolved).route
    stage = ImageStage(
        image_spec,
        image_route,
        image_settings,
        price(image_route, image_settings),
        video_route,
        price(video_route, resolved),
    )
    settings = {**resolved, "image_stage": {"model": image_spec.slug, "settings": image_settings}}
    provider = get_provider(image_route.provider)
    return Prepared(
        spec, image_route, provider, settings, stage.cost + stage.video_cost, None, None, (), stage
    )


def prepare_image(user: User, req: GenerateImageRequest) -> Prepared:
    """Validate an image request against the model (before any charge) and price it."""
    spec = find_model(req.model_id)
    if not spec.makes_images:
        raise errors.InvalidField("model_id", f"{spec.slug} makes videos: use generate-video.")
    check_model(spec)
    resolved = resolve_settings(spec, req.settings.model_dump(exclude_none=True))
    refs = [*image_ref_urls(user, req.image_ids, "image_ids"), *req.image_urls]
    if req.video_id is not None:
        refs.append(last_frame_url(user, req.video_id))
    if len(refs) > spec.max_input_images:
        raise errors.InvalidField(
            "image_ids", f"{spec.slug} takes at most {spec.max_input_images} reference images."
        )
    for url in req.image_urls:
        sha = _check_image(user, spec, url, field="image_urls")
        if sha is not None:
            _verified_upload(user, sha)
    route = routing.choose(spec, resolved).route
    cost = price(route, resolved)
    return Prepared(spec, route, get_provider(route.provider), resolved, cost, None, None, tuple(refs))


def image_ref_urls(user: User, image_ids: Any, field: str) -> list[str]:
    """Our storage URLs of images the caller generated; another user's id reads as none (404)."""
    storage = get_storage()
    urls = []
    for image_id in image_ids:
        row = get_db().call("get_image", user=user.id, image=image_id)
        if row is None:
            raise errors.NotFound(f"No image {image_id} for this user.", field=field)
        urls.append(storage.ref_url(str(row["key"])))
    return urls


def last_frame_url(user: User, video_id: UUID) -> str:
    """Our storage URL of the last frame of a video the caller generated (another user's reads as none, 404)."""
    found = get_db().call("get_last_frame", user=user.id, job=video_id)
    if found is None or found.get("kind") != "video":
        raise errors.NotFound(f"No video {video_id} for this user.", field="video_id")
    if found.get("status") != JobStatus.COMPLETED:
        raise errors.InvalidTransition(
            f"The video {video_id} is {found.get('status')}: only a completed video can be continued.",
            field="video_id",
        )
    if not found.get("key"):
        raise errors.InvalidTransition("No last frame was kept for that video.", field="video_id")
    return get_storage().ref_url(str(found["key"]))


def _verified_upload(user: User, sha: str) -> None:
    from shared.media import uploads

    uploads.verify_upload(user, sha)


def _video_models() -> list[str]:
    return sorted(slug for slug, spec in all_models().items() if not spec.makes_images)


def _image_models() -> list[str]:
    return sorted(slug for slug, spec in all_models().items() if spec.makes_images)


def price(route: Route, resolved: dict[str, Any]) -> int:
    """The credits a video with these resolved settings is charged at this route (also what list-models
    publishes)."""
    settings = get_settings()
    return route.price.credits(
        resolved, credits_per_usd=settings.credits_per_usd, margin=settings.credit_margin
    )


def start_generation(user: User, key: str, raw_body: Any, req: GenerateVideoRequest) -> Outcome:
    """Validate, then debit and create the job in one procedure call, then hand it to the provider."""
    team = Team(req.campaign_id, req.webhook_url, RATE_LIMIT_NAME)
    return _start(user, key, fingerprint(raw_body), ENDPOINT, prepare(user, req), req.prompt, team)


def start_image_generation(user: User, key: str, raw_body: Any, req: GenerateImageRequest) -> Outcome:
    """generate-image: validate, then debit and create the image job in one procedure call, then submit it."""
    prepared = prepare_image(user, req)
    team = Team(req.campaign_id, req.webhook_url, IMAGE_RATE_LIMIT_NAME)
    return _start(
        user, key, fingerprint(raw_body, IMAGE_ENDPOINT), IMAGE_ENDPOINT, prepared, req.prompt, team
    )


@dataclass(frozen=True)
class Team:
    """What a request adds for teams: its campaign, its own webhook URL, and the rate limit it counts against."""

    campaign_id: UUID | None
    webhook_url: str | None
    rate_limit_name: str


def _start(user: User, key: str, print_: str, endpoint: str, p: Prepared, prompt: str, team: Team) -> Outcome:
    settings = get_settings()
    params: dict[str, Any] = dict(
        user=user.id,
        endpoint=endpoint,
        key=key,
        fingerprint=print_,
        model_id=p.spec.id,
        model_slug=p.spec.slug,
        provider=p.route.provider,
        provider_endpoint=p.route.endpoint_for(p.input_images),
        kind="image" if p.spec.makes_images else "video",
        input_images=list(p.input_images),
        stage="image" if p.stage else None,
        image_credits=p.stage.cost if p.stage else 0,
        next_route={"provider": p.stage.video_route.provider, "endpoint": p.stage.video_route.endpoint}
        if p.stage
        else None,
        prompt=prompt,
        image_url=p.image_url,
        settings=p.settings,
        cost=p.cost,
        signup_credits=settings.signup_credits,
        ttl_s=settings.idempotency_ttl_s,
        hold_s=_SUBMIT_HOLD_S if p.provider.remote_submit else 0,
        upload_sha=p.upload_sha,
        campaign=team.campaign_id,
        api_key=user.api_key_id,
        webhook_url=_webhook_url(team.webhook_url),
        **_rate_params(user, settings.rate_limits, team.rate_limit_name),
    )
    result = get_db().call("start_generation", **params)
    if result["outcome"] == "upload_unverified":
        from shared.media import uploads

        uploads.verify_upload(user, str(p.upload_sha))
        result = get_db().call("start_generation", **params)
    outcome = _outcome(result, user.id, team.rate_limit_name)
    if result["outcome"] == "created":
        job_id = UUID(outcome.body["job_id"])
        if p.stage is not None:  # the start image first
            job = JobRequest(job_id, user.id, p.stage.spec, p.route, prompt, None, p.stage.settings)
        else:
            job = JobRequest(
                job_id, user.id, p.spec, p.route, prompt, p.image_url, p.settings, input_images=p.input_images
            )
        lifecycle.submit(job)
    return outcome


def _rate_params(user: User, spec: str, name: str) -> dict[str, Any]:
    """The limiter of this caller for an endpoint (none when RATE_LIMITS leaves it unlimited)."""
    limit = ratelimit.limit_for(spec, name)
    if limit is None:
        return {}
    return dict(
        rate_key=ratelimit.limiter_key(limit, user.id, user.api_key_id),
        rate_limit=limit.count,
        rate_window_s=limit.window_s,
    )


def _webhook_url(url: str | None) -> str | None:
    """A request's own webhook URL, checked like every webhook destination (https, public address)."""
    if url is None:
        return None
    from shared.webhooks.destinations import check_destination

    check_destination(url, "webhook_url")
    return url


def _outcome(result: dict[str, Any], user_id: UUID, rate_limit_name: str) -> Outcome:
    kind = result["outcome"]
    rate_headers = ratelimit.headers(result.get("rate"), rate_limit_name)
    if kind in ("created", "replay"):
        return Outcome(int(result["status"]), result["body"], replayed=kind == "replay", headers=rate_headers)
    if kind in _REFUSALS:
        raise _REFUSALS[kind](result, rate_headers)
    if kind == "mismatch":
        raise errors.IdempotencyKeyReused()
    if kind == "in_progress":
        raise errors.IdempotencyInFlight()
    if kind == "insufficient":
        balance, cost, debt = result["balance"], result["cost"], result.get("debt") or 0
        hint = credits.how_to_add(user_id, debt + cost - balance)  # new credits pay the debt first
        if debt:
            raise errors.InsufficientCredits(
                f"The account owes {debt} credits (a refunded purchase); credits it receives pay that first. {hint}",
                balance=balance,
                cost=cost,
                debt=debt,
            )
        raise errors.InsufficientCredits(
            f"This video costs {cost} credits; the balance is {balance}. {hint}", balance=balance, cost=cost
        )
    if kind == "upload_missing":
        raise errors.InvalidField(
            "image_url", "No upload of yours has that URL; use create-upload-url first."
        )
    raise errors.I2VError(f"unexpected outcome {kind!r}")


def _check_image(user: User, spec: ModelSpec, url: str | None, field: str = "image_url") -> str | None:
    """Validate an image URL; for one of our own uploads, return its sha256 (checked in the procedure)."""
    if not url:
        if spec.requires_image:
            raise errors.InvalidField("image_url", f"{spec.slug} needs an image_url or an image_id.")
        return None
    try:
        images.split_url(url)  # a URL that cannot be taken apart is a 400 before anything reads its parts
        key = get_storage().key_for_url(url)
        if key is None:
            images.check_public_url(url, get_settings())
            return None
    except errors.InvalidField as exc:
        raise errors.InvalidField(field, exc.message) from exc
    if key.startswith(f"{GENERATED_PREFIX}/{user.id}/"):
        return None  # an image one of the caller's jobs made (image_id)
    upload = UploadKey.parse(key)
    if upload is None or upload.user_id != user.id:
        raise errors.InvalidField(field, "That storage URL is not one of your uploads.")
    return upload.sha256


def cancel(user: User, job_id: UUID) -> VideoStatus:
    """Cancel one of the caller's unfinished jobs, refunding it (a second cancel changes nothing)."""
    job = load_job(job_id, user=user.id)
    if job is None:
        raise errors.JobNotFound(f"No job {job_id} for this user.", job_id=str(job_id))
    provider = registry.find_provider(job.provider)
    if provider is not None and provider.remote_submit:
        from shared.jobs import reconcile

        reconcile.cancel_remote(job_id, user.id)
    elif get_db().call("cancel_job", user=user.id, job=job_id) and provider is not None:
        provider.job_canceled(job_id)  # stop any work on it now, wherever it runs
    return status(user, job_id)


def status(user: User, job_id: UUID) -> VideoStatus:
    """The caller's job as the API shows it; another user's job is indistinguishable from none (404)."""
    job = load_job(job_id, user=user.id)
    if job is None:
        raise errors.JobNotFound(f"No job {job_id} for this user.", job_id=str(job_id))
    if job.active:
        from shared.jobs import reconcile

        if reconcile.refresh_if_stale(job):
            job = load_job(job_id, user=user.id) or job
    return status_view(job)


def status_view(job: Job) -> VideoStatus:
    """Shape a job for the API, signing media URLs."""
    ttl = get_settings().media_url_ttl_s
    storage = get_storage()
    done = job.status == JobStatus.COMPLETED
    return VideoStatus(
        job_id=job.job_id,
        status=job.status,
        progress=job.progress,
        video_url=storage.download_url(job.video_key, ttl) if done and job.video_key else None,
        thumbnail_url=storage.download_url(job.thumbnail_key, ttl) if done and job.thumbnail_key else None,
        error_message=job.error_message,
        queue_position=job.queue_position,
        logs=[str(entry.get("message", "")) for entry in job.logs if isinstance(entry, dict)] or None,
        model=job.model,
        kind="image" if job.kind == "image" else "video",
        stage="image" if job.stage == "image" else "video" if job.stage else None,
        images=[_image_out(image, ttl) for image in job.images] if job.images else None,
        provider=job.provider,
        credits_used=job.credits_used,
        campaign_id=job.campaign_id,
        client_id=job.client_id,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def _image_out(image: dict[str, Any], ttl: int) -> ImageOut:
    return ImageOut(
        image_id=image["image_id"],
        url=get_storage().download_url(str(image["key"]), ttl),
        content_type=str(image["content_type"]),
        width=image.get("width"),
        height=image.get("height"),
    )
