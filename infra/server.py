"""The local stack: every function on one HTTP server, embedded Postgres, local storage, the local engine."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions import (
    cancel_video,
    create_checkout_session,
    create_upload_url,
    fal_webhook,
    generate_video,
    get_credits,
    get_video_status,
    health,
    list_credit_packs,
    list_models,
    list_videos,
    quote,
    status,
    stripe_webhook,
)
from infra.upload_route import UploadRoute
from shared import billing, errors, hosted, logs, storage
from shared import db as dbmod
from shared.migrations import migrate, sync_models
from shared.providers.local import get_local_engine
from shared.settings import Settings, get_settings, set_runtime_base_url
from shared.web import App, Endpoint, error_response, request_id

log = logging.getLogger("i2v.server")

#: Every HTTP cloud function, in the order the OpenAPI document lists them.
ENDPOINTS: list[Endpoint] = [
    generate_video.endpoint,
    get_video_status.endpoint,
    list_models.endpoint,
    get_credits.endpoint,
    create_upload_url.endpoint,
    cancel_video.endpoint,
    fal_webhook.endpoint,
    list_videos.endpoint,
    status.endpoint,
    quote.endpoint,
    list_credit_packs.endpoint,
    create_checkout_session.endpoint,
    stripe_webhook.endpoint,
    health.endpoint,
]


def media_router() -> APIRouter:
    """Routes that serve local storage: signed GETs of media (signed PUTs of uploads: infra.upload_route)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/media/{key:path}")
    def get_media(key: str, exp: Annotated[str, Query()] = "", sig: Annotated[str, Query()] = "") -> Response:
        local = _local_storage()
        local.check_signature("GET", key, exp, sig)
        info = local.info(key)
        if info is None:
            raise errors.NotFound("No such object.")
        return FileResponse(local.path(key), media_type=info.content_type or "application/octet-stream")

    return router


def _local_storage() -> storage.LocalStorage:
    current = storage.get_storage()
    if not isinstance(current, storage.LocalStorage):
        raise errors.NotFound("Local storage is not in use.")
    return current


def site_app() -> FastAPI:
    """What the local server serves besides the functions: media, uploads, /openapi.json and /docs."""
    app = FastAPI(title="i2v", openapi_url=None, docs_url=None, redoc_url=None)

    def render(request: Request, exc: Exception) -> Response:
        """The functions' own error renderer (one JSON shape, request id, 5xx logged)."""
        answer = error_response(exc, request_id(request.headers, request.scope), request.url.path)
        return Response(answer.body, answer.status, headers=answer.headers, media_type="application/json")

    @app.exception_handler(errors.I2VError)
    def _i2v(request: Request, exc: errors.I2VError) -> Response:
        return render(request, exc)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return render(request, errors.BadRequest("Invalid request."))

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> Response:
        missing = {404: errors.NotFound("No such endpoint."), 405: errors.MethodNotAllowed()}
        return render(request, missing.get(exc.status_code) or errors.BadRequest(str(exc.detail)))

    @app.exception_handler(Exception)
    def _unexpected(request: Request, exc: Exception) -> Response:
        return render(request, exc)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        from infra.openapi import document

        return JSONResponse(document())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="i2v API")

    app.include_router(media_router())
    return app


def create_app() -> App:
    """The app serving every function under /functions/v1/<name>, then local media, uploads and the docs."""
    return App(ENDPOINTS, fallback=UploadRoute(site_app()))


class LocalStack:
    """Database (embedded unless DATABASE_URL), migrations, storage, engine workers and the HTTP server."""

    def __init__(self, settings: Settings | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings or get_settings()
        self.host = host
        self.port = port or free_port(host)
        self.base_url = f"http://{host}:{self.port}"
        self.embedded: Any = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def prepare(self) -> None:
        """Start (or connect to) Postgres, apply migrations, configure storage and start the engine."""
        logs.configure(self.settings.log_level)
        url = self.settings.database_url
        if not url:
            from infra.postgres import EmbeddedPostgres

            self.embedded = EmbeddedPostgres(self.settings.home / "pgdata")
            url = self.embedded.url
        database = dbmod.configure(
            url,
            max_size=self.settings.db_pool_size,
            statement_timeout_ms=self.settings.db_statement_timeout_ms,
            transaction_pooler=self.settings.uses_transaction_pooler(),
        )
        applied = migrate(database)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        sync_models(database)
        set_runtime_base_url(self.base_url)
        storage.configure(self.settings)
        if self.settings.local_engine:
            get_local_engine().start(self.settings.local_engine_workers)
        threading.Thread(target=self._housekeeping, name="i2v-housekeeping", daemon=True).start()

    def _housekeeping(self) -> None:
        """Reconcile hosted jobs every RECONCILE_INTERVAL_S; purge expired idempotency keys and old Stripe event
        ids every 10 minutes."""
        last_purge = 0.0
        while not self._stop.wait(self.settings.reconcile_interval_s):
            try:
                hosted.reconcile_once()
                if time.monotonic() - last_purge > 600:
                    dbmod.get_db().call("purge_idempotency_keys")
                    dbmod.get_db().call("purge_stripe_events")
                    last_purge = time.monotonic()
            except errors.I2VError as exc:
                log.warning("housekeeping failed: %s", exc.message)

    def serve(self) -> None:
        """Serve in the foreground until interrupted."""
        self.prepare()
        log.info("i2v serving at %s/functions/v1/", self.base_url)
        try:
            uvicorn.run(
                create_app(),
                host=self.host,
                port=self.port,
                log_level="warning",
                http="infra.http_protocol:JsonErrorH11Protocol",  # malformed HTTP answered in the JSON error shape
            )
        finally:
            self.shutdown()

    def start_background(self) -> str:
        """Serve on a background thread (tests, the demo); return the base URL once it answers."""
        self.prepare()
        config = uvicorn.Config(
            create_app(),
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            http="infra.http_protocol:JsonErrorH11Protocol",  # malformed HTTP answered in the JSON error shape
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="i2v-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        return self.base_url

    def shutdown(self) -> None:
        """Stop the HTTP server, the engine, the pool and the embedded database."""
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        get_local_engine().stop()
        billing.close()
        with contextlib.suppress(errors.I2VError):
            dbmod.get_db().close()
        if self.embedded is not None:
            self.embedded.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
