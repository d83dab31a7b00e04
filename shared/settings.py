"""Configuration: the only module that reads the environment.

Every setting is an environment variable of the same name (upper case); see the README's table.
"""

from __future__ import annotations

import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PRODUCT_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")  # App Store Connect product ids: letters, digits, . _ -
_CREDITS = re.compile(r"^[1-9][0-9]{0,8}$")


class Settings(BaseSettings):
    """All i2v settings, read once from the environment."""

    # An empty variable counts as unset (deploy tools write "" for settings left out).
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", env_ignore_empty=True
    )

    i2v_home: Path = Field(
        default=Path(".i2v"), description="State dir: embedded Postgres, media, dev secret."
    )
    database_url: str | None = Field(default=None, description="Postgres URL; unset = embedded Postgres.")
    db_statement_timeout_ms: int = 15_000
    db_pool_size: int = 10
    # A transaction-mode pooler (Supabase's port 6543) cannot carry a per-connection statement timeout; it is then
    # set per call inside the call's transaction. Unset: detected from the URL (port 6543).
    db_transaction_pooler: bool | None = None
    supabase_jwt_secret: str | None = None
    supabase_jwks_url: str | None = None
    supabase_jwt_issuer: str | None = None
    # The web console's Supabase sign-in (public values: the project URL and its anon key). Unset locally: the
    # console offers the dev sign-in while the stack signs tokens with its own dev secret.
    supabase_url: str | None = None
    supabase_anon_key: str | None = None
    signup_credits: int = Field(default=0, ge=0)
    public_base_url: str | None = None
    storage_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # Keys for an S3-compatible store (Supabase Storage's S3 access keys). Unset: boto3's own credential chain
    # (the Lambda execution role on AWS, the usual AWS_* variables elsewhere).
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    media_url_ttl_s: int = 3600
    upload_url_ttl_s: int = 900
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    idempotency_ttl_s: int = 24 * 3600
    local_engine: bool = True
    local_engine_workers: int = 2
    allow_private_image_urls: bool = False
    # Pricing of hosted models: credits = provider USD x CREDITS_PER_USD x CREDIT_MARGIN, rounded up.
    credits_per_usd: float = Field(default=100.0, gt=0)
    credit_margin: float = Field(default=1.3, gt=0)
    # fal.ai
    fal_key: str | None = None
    fal_queue_url: str = "https://queue.fal.run"
    fal_rest_url: str = "https://rest.fal.ai"
    fal_cdn_url: str = "https://v3.fal.media"
    fal_jwks_url: str = "https://rest.fal.ai/.well-known/jwks.json"
    # Replicate: the API base without /v1 (plain http allowed for tests and proxies). The webhook signing secret is
    # fetched from GET /v1/webhooks/default/secret and cached; REPLICATE_WEBHOOK_SECRET skips that call.
    replicate_api_token: str | None = None
    replicate_api_url: str = "https://api.replicate.com"
    replicate_webhook_secret: str | None = None
    # Provider HTTP calls: retries bounded by attempts and total time; a breaker opens after repeated failures.
    provider_retry_attempts: int = 5
    provider_retry_timeout_s: float = 20.0
    provider_http_timeout_s: float = 10.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    # Reconciliation of hosted jobs.
    reconcile_interval_s: float = 30.0
    webhook_quiet_s: int = 120
    job_deadline_s: int = 2 * 3600
    status_stale_s: int = 30  # get-video-status asks the provider about a job this quiet ...
    status_poll_min_interval_s: int = 15  # ... at most this often
    mirror_max_bytes: int = 2 * 1024**3
    mirror_lease_s: int = 300
    # Copy the video right after answering fal's webhook; false leaves it to the reconciler (e.g. short Lambdas).
    mirror_after_webhook: bool = True
    # The Lambda function that copies videos (functions/mirror_video.py). When set, fal-webhook hands each copy to
    # it as an asynchronous invocation and answers fal at once; unset, the copy runs after the answer, in-process.
    mirror_function: str | None = None
    # Stripe (buying credits). Without STRIPE_SECRET_KEY / STRIPE_WEBHOOK_SECRET the purchase endpoints answer 503.
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = Field(default=None, description="Stripe API URL; unset = api.stripe.com.")
    checkout_success_url: str | None = Field(
        default=None, description="After payment; Stripe fills in {CHECKOUT_SESSION_ID}."
    )
    checkout_cancel_url: str | None = None
    # App Store in-app purchases (the iOS app). Without APPLE_BUNDLE_ID, APPLE_ROOT_CERTS and APP_STORE_PACKS
    # (and APPLE_APP_ID in Production) the App Store endpoints answer 503.
    apple_bundle_id: str | None = None
    apple_app_id: int | None = Field(default=None, description="The app's Apple ID (App Store Connect).")
    apple_environment: Literal["Production", "Sandbox"] = "Production"
    apple_root_certs: str | None = Field(
        default=None, description="Comma-separated paths of trusted root certificates (DER or PEM)."
    )
    apple_online_checks: bool = True  # OCSP revocation checks of the signing chain (network calls to Apple)
    apple_accept_sandbox: bool = (
        True  # a Production server also takes Sandbox purchases (App Review, TestFlight)
    )
    app_store_packs: str | None = Field(
        default=None,
        description="Product id -> credits: com.example.credits100=100,com.example.credits500=550",
    )
    # App Store Server API key (transaction lookup by id): issuer id, key id and the .p8 key's PEM text.
    apple_issuer_id: str | None = None
    apple_key_id: str | None = None
    apple_private_key: str | None = None
    app_store_api_url: str | None = Field(
        default=None, description="App Store Server API URL; unset = Apple's host for the environment."
    )
    # API keys: how long a container trusts that a key it checked is still live (billed requests check it in
    # their own call whatever this says).
    api_key_recheck_s: float = Field(default=5.0, ge=0)
    # Per caller (user or API key) and endpoint: NAME=N/s|/min|/h, comma-separated; NAME=off or "off" for none.
    rate_limits: str = "generate-video=5/min,generate-image=10/min"
    # Outgoing webhooks: the wait for each delivery's answer, deliveries sent per run, and (tests and local
    # development only) allowing http:// and private addresses.
    webhook_timeout_s: float = Field(default=15.0, gt=0)
    webhook_batch: int = Field(default=50, ge=1)
    webhook_concurrency: int = Field(default=8, ge=1)  # deliveries of a batch in flight at once
    # An endpoint none of whose attempts succeeded for this long is disabled (Standard Webhooks: after persistent
    # failure); enable-webhook-endpoint sends to it again. Default 5 days.
    webhook_disable_after_s: int = Field(default=432_000, ge=60)
    allow_private_webhook_urls: bool = False
    # i2v serve: send each outgoing webhook as soon as it is queued (a sender listening to Postgres), instead of
    # with housekeeping every RECONCILE_INTERVAL_S.
    webhook_sender: bool = True
    # Deployed: the deliver-webhooks function, invoked asynchronously after a request or copy that changed a job
    # and left deliveries due, so they go out within seconds rather than at the next minute's schedule.
    webhook_function: str | None = None
    log_level: str = "INFO"
    # Operations. Operators (the console's operator page, GET operator-overview): user ids, comma-separated; a
    # user whose token's app_metadata.roles holds "operator" is one too.
    operator_user_ids: str | None = None
    # CloudWatch Embedded Metric Format lines on stdout as each Lambda invocation ends. Unset: on inside AWS
    # Lambda (AWS_LAMBDA_FUNCTION_NAME, set by the runtime), off elsewhere (the local server serves /metrics).
    metrics_emf: bool | None = None
    metrics_namespace: str = "i2v"
    aws_lambda_function_name: str | None = None
    # The reconciler checks the ledger (ledger_mismatches, purchase_mismatches) at most this often per process.
    ledger_check_interval_s: int = 600
    # OpenTelemetry traces over OTLP/HTTP when set (the collector's base URL, e.g. http://127.0.0.1:4318); the
    # exporter reads the other OTEL_EXPORTER_OTLP_* variables (headers, timeout) itself. Unset: nothing loads.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "i2v"

    @field_validator("operator_user_ids")
    @classmethod
    def _operator_ids(cls, value: str | None) -> str | None:
        for part in (value or "").split(","):
            if part.strip():
                try:
                    UUID(part.strip())
                except ValueError:
                    raise ValueError(
                        f"OPERATOR_USER_IDS: {part.strip()!r} is not a user id (a UUID)"
                    ) from None
        return value

    def operators(self) -> frozenset[UUID]:
        """The user ids OPERATOR_USER_IDS names."""
        return frozenset(UUID(p.strip()) for p in (self.operator_user_ids or "").split(",") if p.strip())

    def emf_enabled(self) -> bool:
        """Whether Lambda invocations end with EMF metric lines (METRICS_EMF, else: running inside AWS Lambda)."""
        if self.metrics_emf is not None:
            return self.metrics_emf
        return bool(self.aws_lambda_function_name)

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: str) -> str:
        from shared.ratelimit import parse_limits

        parse_limits(value)  # a ValueError names the offending entry at startup
        return value

    def uses_transaction_pooler(self) -> bool:
        """True when DATABASE_URL goes through a transaction-mode pooler (DB_TRANSACTION_POOLER, else port 6543)."""
        if self.db_transaction_pooler is not None:
            return self.db_transaction_pooler
        return bool(self.database_url) and urlsplit(str(self.database_url)).port == 6543

    @property
    def home(self) -> Path:
        """The state directory, created on first use."""
        self.i2v_home.mkdir(parents=True, exist_ok=True)
        return self.i2v_home

    @property
    def media_dir(self) -> Path:
        """Where local storage keeps objects."""
        path = self.home / "media"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def jwt_secret(self) -> str:
        """The HS256 secret: SUPABASE_JWT_SECRET, else a dev secret generated once in I2V_HOME."""
        if self.supabase_jwt_secret:
            return self.supabase_jwt_secret
        return _dev_secret(self.home / "dev-jwt-secret")

    def uses_dev_secret(self) -> bool:
        """True when tokens are signed with the dev secret kept in I2V_HOME (no Supabase secret or key set)."""
        return not (self.supabase_jwt_secret or self.supabase_jwks_url)

    def signing_secret(self) -> bytes:
        """The secret that signs local media and upload URLs (kept in I2V_HOME)."""
        return _dev_secret(self.home / "url-signing-secret").encode()


def parse_app_store_packs(value: str) -> dict[str, int]:
    """``APP_STORE_PACKS`` as product id -> credits (``a=100,b=550``); ValueError naming the bad entry.

    Read when an App Store endpoint runs (not at start-up), so a mistake disables App Store purchases only.
    """
    packs: dict[str, int] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        product, _, credits = (part.strip() for part in entry.partition("="))
        if not _PRODUCT_ID.match(product) or not _CREDITS.match(credits) or product in packs:
            raise ValueError(
                f"APP_STORE_PACKS entry {entry!r} is not product_id=credits (credits > 0, each product once)"
            )
        packs[product] = int(credits)
    return packs


def _dev_secret(path: Path) -> str:
    """Read a secret kept in a file, creating it atomically (first writer wins) when absent."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


_runtime_base_url: list[str] = []


def set_runtime_base_url(url: str) -> None:
    """Record where this process serves HTTP (the local server calls this at start-up)."""
    _runtime_base_url[:] = [url.rstrip("/")]


def public_base_url() -> str:
    """How outside callers (provider webhooks included) reach this server: PUBLIC_BASE_URL, else the local URL."""
    settings = get_settings()
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    return _runtime_base_url[0] if _runtime_base_url else "http://127.0.0.1:8000"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings()
