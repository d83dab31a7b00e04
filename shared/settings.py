"""Configuration: the only module that reads the environment.

Every setting is an environment variable of the same name (upper case); see the README's table.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All i2v settings, read once from the environment."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    i2v_home: Path = Field(
        default=Path(".i2v"), description="State dir: embedded Postgres, media, dev secret."
    )
    database_url: str | None = Field(default=None, description="Postgres URL; unset = embedded Postgres.")
    db_statement_timeout_ms: int = 15_000
    db_pool_size: int = 10
    supabase_jwt_secret: str | None = None
    supabase_jwks_url: str | None = None
    supabase_jwt_issuer: str | None = None
    signup_credits: int = Field(default=0, ge=0)
    public_base_url: str | None = None
    storage_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    media_url_ttl_s: int = 3600
    upload_url_ttl_s: int = 900
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    idempotency_ttl_s: int = 24 * 3600
    local_engine: bool = True
    local_engine_workers: int = 2
    allow_private_image_urls: bool = False
    log_level: str = "INFO"

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

    def signing_secret(self) -> bytes:
        """The secret that signs local media and upload URLs (kept in I2V_HOME)."""
        return _dev_secret(self.home / "url-signing-secret").encode()

    def base_url(self, fallback: str) -> str:
        """How outside callers reach this server."""
        return (self.public_base_url or fallback).rstrip("/")


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings()
