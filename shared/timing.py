"""Per-request database timing: round trips and time spent, reported in each response's Server-Timing header."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RequestStats:
    """Database round trips made while serving one request (reported in its Server-Timing header)."""

    round_trips: int = 0
    seconds: float = 0.0

    def server_timing(self) -> str:
        """The Server-Timing header value: ``db;dur=<ms>;desc="<n> round trips"``."""
        return f'db;dur={self.seconds * 1000:.1f};desc="{self.round_trips} round trips"'


_request_stats: ContextVar[RequestStats | None] = ContextVar("i2v_db_request_stats", default=None)


def track_request() -> RequestStats:
    """Start counting this request's database round trips (in this context and the threads it starts)."""
    stats = RequestStats()
    _request_stats.set(stats)
    return stats


def current() -> RequestStats | None:
    """The stats of the request in hand, if one is being tracked."""
    return _request_stats.get()
