"""The HTTP edge shared by every function: app factory, one error renderer, request ids, auth dependency."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import errors, logs
from shared.auth import User, bearer_token, verify_token
from shared.db import track_request

log = logging.getLogger("i2v.http")
_SF_STRING = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$')
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:=+/-]{1,128}$")
M = TypeVar("M", bound=BaseModel)
_LOC_KINDS = ("body", "query", "header", "path", "cookie")


def idempotency_header(
    idempotency_key_header: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> str:
    """The request's Idempotency-Key (required)."""
    return idempotency_key(idempotency_key_header)


def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
    """The caller, from the Supabase access token in the Authorization header."""
    return verify_token(bearer_token(authorization))


CurrentUser = Annotated[User, Depends(current_user)]
IdempotencyKey = Annotated[str, Depends(idempotency_header)]


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


def parse_body(model: type[M], body: Any) -> M:
    """Validate a JSON body against a request model, naming the first offending field in the error."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc.errors()) from exc


def _validation_error(problems: Iterable[Any]) -> errors.InvalidField:
    items = list(problems)
    first = items[0] if items else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return errors.InvalidField("body", "The request body is not valid JSON.")
    field = _field(first.get("loc", ())) or "body"
    return errors.InvalidField(
        field,
        f"{field}: {first.get('msg', 'invalid value')}",
        problems=[{"field": _field(i.get("loc", ())), "message": i.get("msg")} for i in items[:10]],
    )


def _field(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOC_KINDS:
        parts = parts[1:]
    return ".".join(parts)


def request_id(request: Request) -> str:
    """The request's id: the caller's X-Request-Id when well-formed, the Lambda/API Gateway id, or a new one."""
    rid: str | None = getattr(request.state, "request_id", None)
    if rid:
        return rid
    candidate = request.headers.get("x-request-id", "")
    event = request.scope.get("aws.event") or {}
    aws_id = (event.get("requestContext") or {}).get("requestId") if isinstance(event, dict) else None
    rid = candidate if _REQUEST_ID.match(candidate) else (aws_id or uuid.uuid4().hex)
    request.state.request_id = rid
    return rid


def error_response(request: Request, exc: errors.I2VError) -> JSONResponse:
    """Render any i2v error in the one JSON shape."""
    rid = request_id(request)
    if exc.status >= 500:
        log.error(
            "request failed",
            extra={"request_id": rid, "code": exc.code, "path": request.url.path},
            exc_info=exc.__cause__ or exc,
        )
    headers = {"X-Request-Id": rid}
    if "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    return JSONResponse(exc.to_json(rid), status_code=exc.status, headers=headers)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.I2VError)
    def _i2v(request: Request, exc: errors.I2VError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, _validation_error(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err: errors.I2VError
        if exc.status_code == 404:
            err = errors.NotFound("No such endpoint.")
        elif exc.status_code == 405:
            err = errors.MethodNotAllowed()
        else:
            err = errors.BadRequest(str(exc.detail))
        return error_response(request, err)

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, _wrap(exc))

    @app.middleware("http")
    async def _tag(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request_id(request)
        stats = track_request()
        started, status = time.perf_counter(), 500
        with logs.scope(request_id=rid, job_id=_job_param(request), aws_request_id=_aws_request_id(request)):
            try:
                response = await call_next(request)
                status = response.status_code
            finally:
                _log_request(request, status, started)
        response.headers.setdefault("X-Request-Id", rid)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Server-Timing"] = (
            f'db;dur={stats.seconds * 1000:.1f};desc="{stats.round_trips} round trips"'
        )
        return response


def _job_param(request: Request) -> str | None:
    raw = request.query_params.get("job_id", "")
    try:
        return str(uuid.UUID(raw)) if raw else None
    except ValueError:
        return None


def _aws_request_id(request: Request) -> str | None:
    context = request.scope.get("aws.context")
    value = getattr(context, "aws_request_id", None)
    return str(value) if value else None


def _log_request(request: Request, status: int, started: float) -> None:
    """One line per request: method, path (never the query string or headers), status and duration."""
    log.info(
        "%s %s %s",
        request.method,
        request.url.path,
        status,
        extra={
            "event": "request",
            "method": request.method,
            "path": request.url.path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )


def _wrap(exc: Exception) -> errors.I2VError:
    err = errors.I2VError("An unexpected error occurred.")
    err.__cause__ = exc
    return err


def _operation_id(route: APIRoute) -> str:
    """OpenAPI operationId = the endpoint's function name (generate_video), which client generators name after."""
    return route.name


def make_app(*routers: APIRouter, title: str = "i2v") -> FastAPI:
    """A FastAPI app with the error renderer, request ids and CORS, serving the given routers."""
    app = FastAPI(
        title=title,
        version="0.1.0",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        generate_unique_id_function=_operation_id,
    )
    _install_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PUT", "OPTIONS"],
        allow_headers=["authorization", "content-type", "idempotency-key", "x-request-id"],
        expose_headers=["x-request-id", "idempotent-replayed", "retry-after"],
    )
    for router in routers:
        app.include_router(router)
    return app


def json_body(raw: bytes) -> Any:
    """Decode a JSON request body or raise a 400 naming the body."""
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidField("body", "The request body is not valid JSON.") from exc


class LambdaHandler:
    """A Lambda entry point: API Gateway HTTP API (payload 2.0) and Function URL events, through Mangum.

    The app is built on first use and kept for the life of the container, like the database pool behind it, and
    so is the event loop Mangum runs it on: Mangum takes the thread's current loop, so one is made current
    before each invocation when there is none (Python 3.12 deprecates creating it implicitly).
    """

    def __init__(self, *routers: APIRouter) -> None:
        self._routers = routers
        self._adapter: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def prepare(self) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        """Build the app and its Mangum adapter (lifespan off: no startup/shutdown around each invocation)."""
        if self._adapter is None:
            from mangum import Mangum

            logs.configure()
            self._adapter = Mangum(make_app(*self._routers), lifespan="off")
        return self._adapter

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Serve one invocation and return the proxy response (statusCode, headers, body, isBase64Encoded)."""
        adapter = self.prepare()
        self._loop = _current_loop()
        result: dict[str, Any] = adapter(event, context)
        return result


def _current_loop() -> asyncio.AbstractEventLoop:
    """The thread's current event loop, or a new one made current when there is none (or it was closed)."""
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


def lambda_handler(*routers: APIRouter) -> LambdaHandler:
    """The Lambda handler serving ``routers`` (each module in functions/ exposes one as ``handler``)."""
    return LambdaHandler(*routers)
