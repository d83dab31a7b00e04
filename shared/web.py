"""The HTTP edge of every cloud function, without a web framework: endpoints, one ASGI app, the Lambda handler.

A cloud function is an ``Endpoint``: its method and path, what it reads (a bearer token, an Idempotency-Key,
query parameters, a JSON body model) and what it answers, around a plain function ``run(call)``. ``App`` serves
a list of endpoints as an ASGI application. On AWS Lambda, Mangum runs it for the function's one endpoint
(``lambda_handler``); the local server runs it for all of them, in front of its media routes. Both serve
requests through this same code.

Every response carries X-Request-Id, ``Cache-Control: no-store`` and a Server-Timing header with the database
round trips; every error renders in the one JSON shape of shared.errors; CORS answers the app's preflights; one
JSON log line is written per request, each request is a span when tracing is on (shared.tracing), and a Lambda
invocation ends by writing its metrics as EMF lines (shared.metrics). Nothing heavy loads here: pydantic,
psycopg, PyJWT, OpenTelemetry and the service modules load on first use, so a Lambda's init phase pays only for
this module and Mangum (bench/cold_start.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from shared import errors, invoke, logs, metrics, timing, tracing

if TYPE_CHECKING:
    from shared.auth import User

log = logging.getLogger("i2v.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What an endpoint reads at most unless it says otherwise: API bodies are small JSON documents (a 4,000
#: character prompt and a URL). A larger body is refused with 413 before it is read (by its Content-Length) or
#: as soon as it passes the limit (chunked), so no request can make the server hold more than this.
DEFAULT_MAX_BODY = 64 * 1024
MAX_JSON_DEPTH = 64  # request bodies nest a few levels; deeper is refused before parsing
_ESCAPE = re.compile(r"\\.", re.DOTALL)  # an escape inside a JSON string (removed first: it may be \\")
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}
_SCAN_CHUNK = 1 << 16
_SURROGATE = re.compile("[\ud800-\udfff]")
_SF_STRING = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:=+/-]{1,128}$")
_LOC_KINDS = ("body", "query", "header", "path", "cookie")
CORS_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers": (
        "x-request-id, idempotent-replayed, retry-after, location, ratelimit, ratelimit-policy"
    ),
}
PREFLIGHT_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, PUT, OPTIONS",
    "access-control-allow-headers": "authorization, content-type, idempotency-key, x-request-id, x-api-key",
    "access-control-max-age": "600",
}


@dataclass(frozen=True)
class Param:
    """A query parameter an endpoint reads: its type, whether it is required, its default and bounds."""

    name: str
    kind: Literal["str", "int", "uuid", "bool"] = "str"
    required: bool = False
    default: str | int | None = None
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""

    def parse(self, raw: str | None) -> Any:
        """The typed value of ``raw`` (None or empty: the default), or a 400 naming the parameter."""
        if raw is None or raw == "":
            if self.required:
                raise errors.InvalidField(self.name, f"{self.name}: Field required")
            return self.default
        if self.kind == "uuid":
            try:
                return uuid.UUID(raw)
            except ValueError:
                raise errors.InvalidField(self.name, f"{self.name}: Input should be a valid UUID") from None
        if self.kind == "bool":
            if raw.lower() not in ("true", "false"):
                raise errors.InvalidField(self.name, f"{self.name}: Input should be true or false")
            return raw.lower() == "true"
        if self.kind == "int":
            try:
                value = int(raw)
            except ValueError:
                raise errors.InvalidField(
                    self.name, f"{self.name}: Input should be a valid integer"
                ) from None
            if self.minimum is not None and value < self.minimum:
                raise errors.InvalidField(
                    self.name, f"{self.name}: Input should be greater than or equal to {self.minimum}"
                )
            if self.maximum is not None and value > self.maximum:
                raise errors.InvalidField(
                    self.name, f"{self.name}: Input should be less than or equal to {self.maximum}"
                )
            return value
        return raw


@dataclass
class Reply:
    """A response other than the endpoint's default: another status, extra headers."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    """One cloud function's HTTP contract and the plain function that serves it.

    ``body`` and ``response`` name pydantic models as ``"module:Class"`` so that they load on first use; the
    OpenAPI document (infra/openapi.py) is built from these fields and the function's docstring.
    """

    method: str
    path: str
    run: Callable[[Call], Any]
    tags: tuple[str, ...] = ()
    auth: bool = True
    idempotency_key: Literal["required", "optional"] | None = None
    params: tuple[Param, ...] = ()
    body: str | None = None
    response: str | None = None
    status: int = 200
    exclude_none: bool = False
    errors: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()  # more paths served by the same function, left out of the OpenAPI document
    max_body: int = DEFAULT_MAX_BODY  # bytes of request body read at most (413 beyond)
    response_headers: tuple[tuple[str, str], ...] = ()  # (name, description) of the success answer's headers
    scope: str = (
        "read"  # what an API key must be allowed to do to call it (an access token may do everything)
    )
    checks_key_in_call: bool = False  # its one procedure call checks the API key is live (no separate lookup)

    @property
    def name(self) -> str:
        """The operation id: the function's name (generate_video), which client generators name methods after."""
        return self.run.__name__

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path this endpoint answers on."""
        return (self.path, *self.aliases)


def billed_start_headers(name: str, limit: int) -> tuple[tuple[str, str], ...]:
    """The documented headers of an answer that starts a billed job under an Idempotency-Key and a rate limit
    named ``name`` (``limit`` requests a minute by default): where to poll, replay, and what is left."""
    return (
        ("Location", "get-video-status of the job (relative URL), on the first answer and on a replay"),
        ("Idempotent-Replayed", "`true` when this is the stored answer to an earlier request with this key"),
        (
            "RateLimit-Policy",
            f'the caller\'s limit, e.g. `"{name}";q={limit};w=60` (absent when not limited)',
        ),
        (
            "RateLimit",
            f'what is left of it, e.g. `"{name}";r={limit - 1};t=60` (a 429 carries it and Retry-After)',
        ),
    )


def load_model(ref: str) -> Any:
    """The class named by ``"module:Class"``."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


class Call:
    """One request as a function sees it: the caller, the parsed parameters and body, and after-response work."""

    def __init__(self, method: str, path: str, headers: Mapping[str, str], query: str, body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.query = dict(parse_qsl(query, keep_blank_values=True))  # the last value of a repeated key wins
        self.raw_body = body
        self.request_id = ""
        self.aws_request_id: str | None = None
        self.args: dict[str, Any] = {}
        self.data: Any = None
        self.idempotency_key: str | None = None
        self._user: User | None = None
        self.recheck_key = True  # whether a remembered API key must be checked again (see shared.api_keys)
        self.background: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    @property
    def user(self) -> User:
        """The authenticated caller (endpoints with ``auth`` have one before ``run`` is called)."""
        if self._user is None:
            self._user = current_user(self.headers, recheck_key=self.recheck_key)
        return self._user

    def after(self, task: Callable[..., Any], *args: Any) -> None:
        """Run ``task(*args)`` once the response has been sent."""
        self.background.append((task, args))


def current_user(headers: Mapping[str, str], *, recheck_key: bool = True) -> User:
    """The caller: an API key (X-API-Key, or ``Authorization: Bearer i2v_sk_...``) or a Supabase access token."""
    from shared import api_keys
    from shared.auth import bearer_token, verified_user

    key = headers.get("x-api-key", "").strip()
    if key:
        return api_keys.authenticate(key, recheck=recheck_key)
    token = bearer_token(headers.get("authorization"))
    if api_keys.looks_like_key(token):
        return api_keys.authenticate(token, recheck=recheck_key)
    return verified_user(token)


def idempotency_key(raw: str | None) -> str:
    """Parse an Idempotency-Key header: a bare token or an RFC 8941 sf-string, 1-255 printable ASCII."""
    if raw is None or not raw.strip():
        raise errors.IdempotencyKeyMissing(field="Idempotency-Key")
    raw = raw.strip()
    match = _SF_STRING.match(raw)
    key = re.sub(r'\\(["\\])', r"\1", match.group(1)) if match else raw
    if not 1 <= len(key) <= 255 or not all(0x20 <= ord(c) <= 0x7E for c in key):
        raise errors.InvalidField(
            "Idempotency-Key", "The Idempotency-Key must be 1-255 printable ASCII characters."
        )
    return key


def json_body(raw: bytes, field: str = "body") -> Any:
    """Decode a JSON request body, or raise a 400 naming the body or the offending field.

    Refused before parsing: nesting deeper than MAX_JSON_DEPTH (a cheap scan that skips string contents).
    Refused after: NaN, Infinity and numbers too large for a float, and any string (object keys included)
    Postgres text cannot hold or UTF-8 cannot encode: a NUL character or an unpaired surrogate.
    """
    if not raw:
        return None
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise errors.InvalidField(field, "The request body is not valid JSON.") from exc
    if json_too_deep(text):
        raise errors.InvalidField(
            field,
            f"The request body is nested deeper than {MAX_JSON_DEPTH} levels.",
            max_depth=MAX_JSON_DEPTH,
        )
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:  # ValueError: an int of > 4300 digits
        raise errors.InvalidField(field, "The request body is not valid JSON.") from exc
    check_json_values(value, field)
    return value


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than ``limit`` (string contents skipped).

    Runs before parsing, in time linear in the text, without recursion: a body of thousands of ``[`` is refused
    here instead of exhausting the parser's stack.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    bare = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    depth = 0
    for start in range(0, len(bare), _SCAN_CHUNK):
        steps = list(map(_NESTING.__getitem__, bare[start : start + _SCAN_CHUNK]))
        if max(accumulate(steps, initial=depth)) > limit:
            return True
        depth += sum(steps)
    return False


def check_json_values(value: Any, field: str = "body", path: str = "") -> None:
    """Refuse (400, naming the field path) strings and keys holding a NUL or an unpaired surrogate, and
    non-finite numbers, anywhere in a decoded JSON value (whose depth was bounded first)."""
    if isinstance(value, str):
        _check_text(value, path or field)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise errors.InvalidField(path or field, f"{path or field}: numbers must be finite.")
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{_printable(key)}" if path else _printable(key)
            _check_text(key, child)
            check_json_values(item, field, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_values(item, field, f"{path}.{index}" if path else str(index))


def check_query(query: Mapping[str, str]) -> None:
    """Refuse (400, naming the parameter) query parameters whose name or value holds a NUL character."""
    for name, value in query.items():
        _check_text(name, _printable(name))
        _check_text(value, _printable(name))


def _check_text(text: str, field: str) -> None:
    if "\x00" in text:
        raise errors.InvalidField(field, f"{field}: text must not contain a NUL (\\u0000) character.")
    if _SURROGATE.search(text):
        raise errors.InvalidField(
            field, f"{field}: text must not contain an unpaired surrogate (\\ud800-\\udfff)."
        )


def _printable(name: str) -> str:
    """A name as it can be shown in a field path (NUL and surrogates written as escapes)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", name.replace("\x00", "\\u0000"))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(model: Any, body: Any) -> Any:
    """Validate a decoded JSON body against a pydantic request model, naming the first offending field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from exc


def validation_error(problems: Iterable[Any]) -> errors.InvalidField:
    """A pydantic validation failure as one 400 ``invalid_field`` naming the first field (up to 10 listed)."""
    items = list(problems)
    first = items[0] if items else {"loc": (), "msg": "invalid request"}
    field_name = _field(first.get("loc", ())) or "body"
    return errors.InvalidField(
        field_name,
        f"{field_name}: {_message(first)}",
        problems=[{"field": _field(i.get("loc", ())) or "body", "message": _message(i)} for i in items[:10]],
    )


#: pydantic's wording for a wrong container names our model classes; say what JSON was expected instead.
_TYPE_MESSAGES = {"model_type": "must be a JSON object", "dict_type": "must be a JSON object"}


def _message(problem: Any) -> str:
    """The problem's message, in terms of JSON rather than of the model classes that read it."""
    return _TYPE_MESSAGES.get(problem.get("type", ""), problem.get("msg") or "invalid value")


def _field(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOC_KINDS:
        parts = parts[1:]
    return ".".join(parts)


def _encode(endpoint: Endpoint, result: Any) -> tuple[int, dict[str, str], bytes]:
    reply = result if isinstance(result, Reply) else Reply(result, endpoint.status)
    body = reply.body
    if hasattr(body, "model_dump"):
        body = body.model_dump(mode="json", exclude_none=endpoint.exclude_none)
    return reply.status, reply.headers, _dumps(body)


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@dataclass
class Response:
    """What one request answers: status, headers (lower-case names) and body, then any after-response work."""

    status: int
    headers: dict[str, str]
    body: bytes
    background: list[tuple[Callable[..., Any], tuple[Any, ...]]] = field(default_factory=list)


class App:
    """An ASGI application serving ``endpoints``; requests for other paths go to ``fallback`` (or answer 404)."""

    def __init__(self, endpoints: Sequence[Endpoint], fallback: ASGIApp | None = None) -> None:
        self._routes: dict[str, dict[str, Endpoint]] = {}
        for endpoint in endpoints:
            for path in endpoint.paths:
                methods = self._routes.setdefault(path, {})
                if endpoint.method in methods:
                    raise ValueError(f"two endpoints for {endpoint.method} {path}")
                methods[endpoint.method] = endpoint
        self._fallback = fallback

    @property
    def routes(self) -> set[tuple[str, str]]:
        """The (METHOD, path) pairs this app serves itself."""
        return {(method, path) for path, methods in self._routes.items() for method in methods}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (HTTP; lifespan goes to the fallback or is acknowledged)."""
        if scope["type"] != "http":
            if self._fallback is not None:
                await self._fallback(scope, receive, send)
            elif scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        headers = request_headers(scope)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await send_response(send, Response(200, dict(PREFLIGHT_HEADERS), b""))
            return
        methods = self._routes.get(scope["path"])
        if methods is None and self._fallback is not None:
            await self._fallback(scope, receive, _with_cors(send) if "origin" in headers else send)
            return
        endpoint = (methods or {}).get(scope["method"])
        if methods and endpoint is None and scope["method"] == "HEAD":
            endpoint = methods.get("GET")
        limit = endpoint.max_body if endpoint is not None else 0
        body, too_large = await _read_body(receive, limit, headers.get("content-length"))
        call = Call(
            scope["method"], scope["path"], headers, scope.get("query_string", b"").decode("latin-1"), body
        )
        call.request_id = request_id(headers, scope)
        call.aws_request_id = _aws_request_id(scope)
        miss: errors.I2VError | None = None
        if endpoint is not None and too_large:
            miss = errors.PayloadTooLarge(
                f"Request bodies of {call.path} are limited to {limit} bytes.", max_bytes=limit
            )
        elif endpoint is None:
            miss = errors.MethodNotAllowed() if methods else errors.NotFound("No such endpoint.")
        loop = asyncio.get_running_loop()
        serve_in_context = contextvars.copy_context().run  # logs and timing context reach the thread
        response = await loop.run_in_executor(_executor(), serve_in_context, serve, endpoint, call, miss)
        if "origin" in headers:
            response.headers.update(CORS_HEADERS)
        await send_response(send, response, head=call.method == "HEAD")
        for task, args in response.background:
            await loop.run_in_executor(_executor(), _run_task, task, args, call.request_id)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The threads blocking endpoint code runs on: as many as the database pool has connections (DB_POOL_SIZE,
    at least 4). Requests beyond that wait in the executor's queue rather than in threads that would only wait for
    a connection while contending for the interpreter lock: with 32 requests at once, 40 threads answered about
    20% fewer of them than 10 (bench/generate_tps.py)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from shared.settings import get_settings

            threads = max(4, get_settings().db_pool_size)
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="i2v-http")
        return _pool


def serve(endpoint: Endpoint | None, call: Call, miss: errors.I2VError | None = None) -> Response:
    """Answer one request: check what the endpoint reads, run it, render the result or the error; log one line."""
    stats = timing.track_request()
    started, status = time.perf_counter(), 500
    job_id = _job_param(call.query.get("job_id", ""))
    route = endpoint.path if endpoint is not None else "unmatched"
    with (
        logs.scope(request_id=call.request_id, job_id=job_id, aws_request_id=call.aws_request_id),
        tracing.span(
            f"{call.method} {route}", "server", _span_attributes(call), headers=call.headers
        ) as span,
    ):
        try:
            if miss is not None:
                raise miss
            assert endpoint is not None
            response = Response(*_encode(endpoint, _run(endpoint, call)), background=call.background)
        except Exception as exc:
            response = error_response(exc, call.request_id, call.path)
        status = response.status
        span.set("http.response.status_code", status)
        if status >= 500:
            span.fail(f"HTTP {status}")
        _log_request(call, status, started)
    response.headers = {k.lower(): v for k, v in response.headers.items()}
    response.headers.setdefault("content-type", "application/json")
    response.headers.setdefault("x-request-id", call.request_id)
    response.headers.setdefault("cache-control", "no-store")
    response.headers["server-timing"] = stats.server_timing()
    return response


def _span_attributes(call: Call) -> tracing.Attributes:
    return {
        "http.request.method": call.method,
        "url.path": call.path,
        "i2v.request_id": call.request_id,
        "faas.invocation_id": call.aws_request_id,
    }


def _run(endpoint: Endpoint, call: Call) -> Any:
    if endpoint.auth:
        call.recheck_key = not endpoint.checks_key_in_call
        if not call.user.allows(endpoint.scope):
            raise errors.InsufficientScope(
                f"This API key's scopes do not include {endpoint.scope!r}, which {call.path} needs.",
                scope=endpoint.scope,
            )
    if endpoint.idempotency_key == "required":
        call.idempotency_key = idempotency_key(call.headers.get("idempotency-key"))
    elif endpoint.idempotency_key == "optional" and "idempotency-key" in call.headers:
        call.idempotency_key = idempotency_key(call.headers["idempotency-key"])
    check_query(call.query)
    call.args = {p.name: p.parse(call.query.get(p.name)) for p in endpoint.params}
    if endpoint.body is not None:
        call.data = parse_body(load_model(endpoint.body), json_body(call.raw_body))
    return endpoint.run(call)


def error_response(exc: Exception, request_id: str, path: str) -> Response:
    """Render an error in the one JSON shape: an i2v error as it is, anything else as a 500 (5xx are logged
    with their cause)."""
    err = exc if isinstance(exc, errors.I2VError) else _wrap(exc)
    if isinstance(err, errors.NotConfigured):  # the deployment's choice (e.g. no Stripe): no failure to trace
        log.warning(
            "feature not configured: %s",
            err.message,
            extra={
                "request_id": request_id,
                "code": err.code,
                "path": path,
                "setting": err.details["setting"],
            },
        )
    elif err.status >= 500:
        log.error(
            "request failed",
            extra={"request_id": request_id, "code": err.code, "path": path},
            exc_info=err.__cause__ or err,
        )
    headers = {"x-request-id": request_id, **err.headers}
    if "retry_after" in err.details:
        headers["retry-after"] = str(err.details["retry_after"])
    return Response(err.status, headers, _dumps(err.to_json(request_id)))


def _run_task(task: Callable[..., Any], args: tuple[Any, ...], rid: str) -> None:
    with logs.scope(request_id=rid):
        try:
            task(*args)
        except Exception:
            log.exception("after-response task failed", extra={"request_id": rid})


def request_id(headers: Mapping[str, str], scope: Scope) -> str:
    """The request's id: the caller's X-Request-Id when well-formed, API Gateway's request id, or a new one."""
    candidate = headers.get("x-request-id", "")
    if _REQUEST_ID.match(candidate):
        return candidate
    event = scope.get("aws.event") or {}
    aws_id = (event.get("requestContext") or {}).get("requestId") if isinstance(event, dict) else None
    return str(aws_id) if aws_id else uuid.uuid4().hex


def _aws_request_id(scope: Scope) -> str | None:
    value = getattr(scope.get("aws.context"), "aws_request_id", None)
    return str(value) if value else None


def _job_param(raw: str) -> str | None:
    try:
        return str(uuid.UUID(raw)) if raw else None
    except ValueError:
        return None


def _log_request(call: Call, status: int, started: float) -> None:
    """One line per request: method, path (never the query string or headers), status and duration."""
    log.info(
        "%s %s %s",
        call.method,
        call.path,
        status,
        extra={
            "event": "request",
            "method": call.method,
            "path": call.path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )


def _wrap(exc: Exception) -> errors.I2VError:
    err = errors.I2VError("An unexpected error occurred.")
    err.__cause__ = exc
    return err


def request_headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; repeated headers joined with commas (as API Gateway does)."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        found[name] = f"{found[name]},{value}" if name in found else value
    return found


async def _read_body(receive: Receive, limit: int, content_length: str | None) -> tuple[bytes, bool]:
    """The whole request body, or (b"", True) when it is longer than ``limit``.

    A declared Content-Length over the limit is refused before any byte is read; a chunked body as soon as it
    passes the limit. Either way at most ``limit`` bytes are ever held.
    """
    declared = (content_length or "").strip()
    if declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


async def send_response(send: Send, response: Response, *, head: bool = False) -> None:
    """Send one whole response (its Content-Length set; no body for HEAD)."""
    headers = dict(response.headers)
    if response.body or response.status not in (204, 304):
        headers["content-length"] = str(len(response.body))
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else response.body})


def _with_cors(send: Send) -> Send:
    """``send`` with the CORS response headers added to the response start."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k.encode(), v.encode()) for k, v in CORS_HEADERS.items() if k.encode() not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class LambdaHandler:
    """A Lambda entry point: API Gateway HTTP API (payload 2.0) and Function URL events, through Mangum.

    The app and its Mangum adapter (lifespan off: no startup/shutdown around each invocation) are built on first
    use and kept for the life of the container, like the database pool behind them, and so is the event loop
    Mangum runs on: Mangum takes the thread's current loop, so one is made current when there is none.
    """

    def __init__(self, *endpoints: Endpoint) -> None:
        self.endpoints = endpoints
        self._adapter: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def prepare(self) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """Build the app and its Mangum adapter once per container."""
        if self._adapter is None:
            from mangum import Mangum

            self._adapter = Mangum(App(self.endpoints), lifespan="off")
        return self._adapter

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Serve one invocation and return the proxy response (statusCode, headers, body, isBase64Encoded)."""
        adapter = self.prepare()
        if (
            self._loop is None
        ):  # the first invocation: JSON logs at LOG_LEVEL (settings load with the request)
            logs.configure()
        self._loop = _current_loop()
        try:
            result: dict[str, Any] = adapter(event, context)
        finally:
            invoke.wake_webhook_sender()
            metrics.invocation_end(context)
        return result


def _current_loop() -> asyncio.AbstractEventLoop:
    """The thread's current event loop, or a new one made current when there is none (or it was closed)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop: asyncio.AbstractEventLoop | None = asyncio.get_event_loop()
    except RuntimeError:  # none, and none may be created implicitly here
        loop = None
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def lambda_handler(*endpoints: Endpoint) -> LambdaHandler:
    """The Lambda handler serving ``endpoints`` (each module in functions/ exposes one as ``handler``)."""
    return LambdaHandler(*endpoints)
