"""A small typed client for the i2v HTTP API (used by the CLI, the demo and the MCP server)."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import time
from pathlib import Path
from typing import Any

import httpx

_TERMINAL = {"completed", "failed", "canceled"}


class ApiError(Exception):
    """An error answer from the API, in its JSON error shape."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code: str = err.get("code", "http_error")
        self.message: str = err.get("message", f"HTTP {status}")
        self.details: dict[str, Any] = err.get("details", {})
        self.request_id: str | None = err.get("request_id")
        super().__init__(f"{self.code}: {self.message}")


class I2VClient:
    """Calls /functions/v1/* with a bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> I2VClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, name: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, f"/functions/v1/{name}", **kwargs)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            raise ApiError(resp.status_code, body)
        return resp.json()

    def health(self) -> dict[str, Any]:
        """GET health."""
        result: dict[str, Any] = self._call("GET", "health")
        return result

    def list_models(self) -> list[dict[str, Any]]:
        """GET list-models."""
        models: list[dict[str, Any]] = self._call("GET", "list-models")["models"]
        return models

    def credits(self, limit: int = 20) -> dict[str, Any]:
        """GET get-credits."""
        result: dict[str, Any] = self._call("GET", "get-credits", params={"limit": limit})
        return result

    def upload_image(self, path: Path) -> str:
        """Upload a local image through create-upload-url (skipped when already stored); return its image_url."""
        data = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type == "image/jpg":
            content_type = "image/jpeg"
        body = {"content_type": content_type, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        target = self._call("POST", "create-upload-url", json=body)
        if not target.get("already_uploaded"):
            resp = httpx.request(
                target["upload_method"],
                target["upload_url"],
                content=data,
                headers=target.get("upload_headers") or {},
                timeout=120,
            )
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, _json_or_empty(resp))
        image_url: str = target["image_url"]
        return image_url

    def generate(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """POST generate-video with an Idempotency-Key."""
        result: dict[str, Any] = self._call(
            "POST", "generate-video", json=body, headers={"Idempotency-Key": idempotency_key}
        )
        return result

    def status(self, job_id: str) -> dict[str, Any]:
        """GET get-video-status."""
        result: dict[str, Any] = self._call("GET", "get-video-status", params={"job_id": job_id})
        return result

    def wait(self, job_id: str, *, timeout: float = 600.0, interval: float = 0.5) -> dict[str, Any]:
        """Poll a job until it is completed, failed or canceled (or the timeout passes)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(job_id)
            if job["status"] in _TERMINAL or time.monotonic() > deadline:
                return job
            time.sleep(interval)

    def download(self, url: str, dest: Path) -> Path:
        """Download a media URL atomically (temporary file, then rename)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        with httpx.stream("GET", url, timeout=120) as resp:
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, {})
            with tmp.open("wb") as out:
                for chunk in resp.iter_bytes(1 << 20):
                    out.write(chunk)
        tmp.replace(dest)
        return dest


def _json_or_empty(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
