"""Rate limits per caller and endpoint: the RATE_LIMITS setting, the limiter key, and the response headers.

The counting happens in Postgres (sql/procedures/rate_limits.sql), inside the procedure call that debits, so
every serverless instance shares one count and a request costs no extra round trip. Headers follow
draft-ietf-httpapi-ratelimit-headers-10: ``RateLimit-Policy: "generate-video";q=5;w=60`` and
``RateLimit: "generate-video";r=2;t=41`` on every limited endpoint's answer, plus ``Retry-After`` on a 429.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600}
_ENTRY = re.compile(r"^([a-z0-9-]+)=(?:(\d+)/([a-z]+)|(off))$")


@dataclass(frozen=True)
class Limit:
    """At most ``count`` accepted requests in any ``window_s`` seconds (all of them at once from a quiet caller)."""

    name: str
    count: int
    window_s: int


def parse_limits(spec: str) -> dict[str, Limit | None]:
    """``generate-video=5/min,generate-image=10/min`` (``/s``, ``/min``, ``/h``; ``=off`` or all ``off``).

    Endpoints not named are not limited; a named one with ``off`` is explicitly not limited.
    """
    text = spec.strip().lower()
    if text in ("", "off", "none"):
        return {}
    limits: dict[str, Limit | None] = {}
    for raw in text.split(","):
        entry = raw.strip().replace(" ", "")
        match = _ENTRY.match(entry)
        if not match or (match.group(3) and match.group(3) not in _UNITS) or match.group(2) == "0":
            raise ValueError(
                f"RATE_LIMITS entry {raw.strip()!r} is not NAME=N/s, NAME=N/min, NAME=N/h or NAME=off"
            )
        name, count, unit, off = match.groups()
        limits[name] = None if off else Limit(name, int(count), _UNITS[unit])
    return limits


def limit_for(spec: str, name: str) -> Limit | None:
    """The limit of one endpoint (by its short name, e.g. ``generate-video``) under a RATE_LIMITS value."""
    return parse_limits(spec).get(name)


def limiter_key(limit: Limit, user_id: UUID, api_key_id: UUID | None) -> str:
    """Whose count a request adds to: the API key's when it came with one, else the user's."""
    who = f"key:{api_key_id}" if api_key_id else f"user:{user_id}"
    return f"{limit.name}:{who}"


def headers(state: dict[str, Any] | None, name: str) -> dict[str, str]:
    """The RateLimit-Policy and RateLimit headers for a limiter state the procedure returned (none without one),
    and Retry-After when the request was refused."""
    if not state:
        return {}
    limit, window, remaining, reset = (int(state[k]) for k in ("limit", "window_s", "remaining", "reset_s"))
    found = {
        "RateLimit-Policy": f'"{name}";q={limit};w={window}',
        "RateLimit": f'"{name}";r={max(remaining, 0)};t={max(reset, 0)}',
    }
    if not state.get("allowed", True):
        found["Retry-After"] = str(max(reset, 1))
    return found
