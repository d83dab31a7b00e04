"""Structured logs: one JSON object per line, carrying the request id and job id of the work in hand.

``configure()`` is called by the local server and by every Lambda handler (it is idempotent). A request binds a
``LogContext`` (``request_id``, and ``aws_request_id`` on Lambda); code that learns which job it works on calls
``set_job()``, and every later line of that request carries the ``job_id``. Job transitions are logged by
``job_transition()`` (called by ``shared.db`` after each transition procedure).

Secrets never reach the output: fields whose name says they hold one are replaced, and the finished line is
scrubbed of anything shaped like a bearer token, a JWT, a Stripe or fal key, a webhook signature or a presigned
URL's signature.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import IO, Any

log = logging.getLogger("i2v.jobs")
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_NAMES = re.compile(
    r"authorization|token|secret|signature|password|passwd|cookie|credential|api[_-]?key|^fal_key$|private",
    re.IGNORECASE,
)
# Each pattern comes with a gate that every text it matches passes: lower-case literals, one of which the
# lower-cased text contains, or a cheap pattern. Most lines pass no gate, and a gate costs a fraction of a scan.
_SCRUB: list[tuple[re.Pattern[str], str, tuple[str, ...] | re.Pattern[str] | None]] = [
    # Authorization header values and JWTs (Supabase access tokens, API-key JWTs).
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',\\]+"), r"\1 " + REDACTED, ("bearer", "basic")),
    (re.compile(r"\beyJ[\w-]{2,}\.[\w-]{2,}\.[\w-]*"), REDACTED, ("eyj",)),
    # Stripe secret, restricted and webhook-signing keys; Stripe-Signature schemes.
    (re.compile(r"\b(?:sk|rk)_(?:test|live)_\w+"), REDACTED, ("_test_", "_live_")),
    (re.compile(r"\bwhsec_[\w+/=]+"), REDACTED, ("whsec_",)),
    (re.compile(r"\b(v0|v1)=[0-9a-fA-F]{16,}"), r"\1=" + REDACTED, ("v0=", "v1=")),
    # fal keys ("Key <id>:<secret>" or a bare "<uuid>:<hex>") and Ed25519 signatures (128 hex digits).
    (re.compile(r"\bKey\s+[\w-]+:[\w-]+"), "Key " + REDACTED, ("key",)),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{16,}\b"),
        REDACTED,
        re.compile(r"-[0-9a-f]{12}:"),
    ),
    (re.compile(r"\b[0-9a-fA-F]{128}\b"), REDACTED, None),
    # Signatures and credentials in presigned S3 URLs and in the local server's signed URLs.
    (
        re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"\\]+"),
        r"\1" + REDACTED,
        ("x-amz-",),
    ),
    (
        re.compile(r"([?&](?:sig|signature|token)=)[^&\s\"\\]+"),
        r"\1" + REDACTED,
        ("sig=", "signature=", "token="),
    ),
]


@dataclass
class LogContext:
    """What every log line of one request (or one scheduled run) carries."""

    request_id: str | None = None
    job_id: str | None = None
    aws_request_id: str | None = None


_context: ContextVar[LogContext | None] = ContextVar("i2v_log_context", default=None)


@contextmanager
def scope(**fields: str | None) -> Iterator[LogContext]:
    """Bind a fresh context for one unit of work; worker threads started inside share the same object."""
    ctx = LogContext(**fields)
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


def current() -> LogContext | None:
    """The context of the work in hand, if any."""
    return _context.get()


def set_job(job_id: object) -> None:
    """Record which job the current work is about (a no-op outside a context)."""
    ctx = _context.get()
    if ctx is not None and job_id is not None:
        ctx.job_id = str(job_id)


def job_transition(procedure: str, params: dict[str, Any], result: Any) -> None:
    """Log one call of a job-transition procedure: which job, which procedure, what it did (never its inputs)."""
    job_id = params.get("job")
    fields: dict[str, Any] = {"event": "job_transition", "procedure": procedure}
    if isinstance(result, dict):
        body = result["body"] if isinstance(result.get("body"), dict) else {}
        job_id = job_id or result.get("job_id") or body.get("job_id")
        fields["outcome"] = result.get("outcome") or result.get("status")
    elif isinstance(result, bool):
        fields["changed"] = result
    if job_id is None:
        return
    set_job(job_id)
    fields["job_id"] = str(job_id)
    log.info("job %s: %s", procedure, fields.get("outcome", fields.get("changed")), extra=fields)


def redact(text: str) -> str:
    """``text`` with anything shaped like a credential or signature replaced."""
    lowered = _fold(text)
    for pattern, replacement, gate in _SCRUB:
        if isinstance(gate, tuple):
            if not any(literal in lowered for literal in gate):
                continue
        elif gate is not None and not gate.search(text):
            continue
        text, replaced = pattern.subn(replacement, text)
        if replaced:
            lowered = _fold(text)
    return text


# Letters that case-insensitive patterns match as i or s although str.lower() leaves them apart.
_FOLD_TO_ASCII = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def _fold(text: str) -> str:
    """``text`` lower-cased the way the gates compare it (a superset of what ``(?i)`` patterns match)."""
    return text.lower() if text.isascii() else text.translate(_FOLD_TO_ASCII).lower()


@lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    return _SECRET_NAMES.search(name) is not None


def _clean(name: str, value: Any) -> Any:
    if _secret_name(name):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    return value


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context and ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON, scrubbed of secrets."""
        entry: dict[str, Any] = {
            "time": f"{_second(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = _context.get()
        if ctx is not None:
            entry.update({k: v for k, v in vars(ctx).items() if v is not None})
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and not name.startswith("_"):
                entry[name] = _clean(name, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


@lru_cache(maxsize=4)
def _second(epoch_s: int) -> str:
    """``YYYY-mm-ddTHH:MM:SS`` (UTC) of a second; the lines of one second share it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


def _adoptable(handler: logging.Handler) -> bool:
    """A plain stream handler (``logging.basicConfig``) or the Lambda runtime's handler: give it our format."""
    return type(handler) is logging.StreamHandler or type(handler).__name__.startswith("LambdaLoggerHandler")


_configured: list[logging.Handler] = []


def configure(level: str | int | None = None, *, stream: IO[str] | None = None) -> None:
    """JSON logs on the root logger at ``level`` (LOG_LEVEL by default); calling it again changes nothing."""
    root = logging.getLogger()
    if level is None:
        from shared.settings import get_settings

        level = get_settings().log_level
    root.setLevel(level.upper() if isinstance(level, str) else level)
    if _configured:
        return
    adopted = [h for h in root.handlers if _adoptable(h)]
    if not adopted:
        handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
        root.addHandler(handler)
        adopted = [handler]
    for handler in adopted:
        handler.setFormatter(JsonFormatter())
    _configured.extend(adopted)
