"""A throwaway local stack for benchmarks: embedded Postgres in a temporary I2V_HOME, real HTTP on loopback."""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    """p50 / p99 / mean in milliseconds of values in seconds."""
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2) if values else float("nan"),
    }


@contextmanager
def local_stack(**env: str) -> Iterator[str]:
    """Start the local stack in this process (settings from ``env``); yields its base URL."""
    home = Path(tempfile.mkdtemp(prefix="i2v-bench-"))
    os.environ.update({"I2V_HOME": str(home), "RECONCILE_INTERVAL_S": "3600", "LOG_LEVEL": "WARNING", **env})
    os.environ.setdefault("XDG_RUNTIME_DIR", str(home))
    os.environ.pop("DATABASE_URL", None)
    from infra.server import LocalStack
    from shared.settings import get_settings

    get_settings.cache_clear()
    stack = LocalStack(get_settings())
    base = stack.start_background()
    try:
        yield base
    finally:
        stack.shutdown()


def new_user(base: str, credits: int) -> httpx.Client:
    """A fresh user with credits, as an authenticated HTTP client."""
    from shared.auth import mint_dev_token
    from shared.billing.ledger import grant

    user = uuid.uuid4()
    if credits:
        grant(user, credits, "benchmark")
    return httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {mint_dev_token(user)}"}, timeout=60
    )


def upload(client: httpx.Client, data: bytes, content_type: str = "image/jpeg") -> str:
    """Upload an image through the API; returns its image_url."""
    body = {"content_type": content_type, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    target = client.post("/functions/v1/create-upload-url", json=body).json()
    if not target.get("already_uploaded"):
        httpx.put(target["upload_url"], content=data, headers=target["upload_headers"]).raise_for_status()
    url: str = target["image_url"]
    return url
