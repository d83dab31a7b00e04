"""The local stack: every function on one HTTP server, embedded Postgres, local storage, the local engine."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions import endpoints
from infra.console_site import console_files, console_router
from infra.upload_route import UploadRoute
from shared import db as dbmod
from shared import errors, logs, operations
from shared.billing import checkout as billing
from shared.jobs import reconcile, updates
from shared.media import scratch, storage
from shared.migrations import migrate, sync_models
from shared.providers.local.engine_provider import get_local_engine
from shared.settings import Settings, get_settings, set_runtime_base_url
from shared.web import App, Endpoint, error_response, request_id
from shared.webhooks.sender import WebhookSender

log = logging.getLogger("i2v.server")

#: Every HTTP cloud function, in the order the OpenAPI document lists them.
ENDPOINTS: list[Endpoint] = endpoints()


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
    """What the local server serves besides the functions: media, uploads, /openapi.json, /docs, /metrics
    (Prometheus) and, at ``/``, the web console (its static files, config.json and the dev sign-in)."""
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

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """This process's metrics in the Prometheus text format (infra/prometheus.py)."""
        from infra.prometheus import exposition

        body, content_type = exposition()
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="i2v API")

    app.include_router(media_router())
    app.include_router(console_router())
    files = console_files()
    if files is not None:
        app.mount("/", files, name="console")  # last: every other route is matched first
    return app


def create_app() -> App:
    """The app serving every function under /functions/v1/<name>, then local media, uploads and the docs."""
    return App(ENDPOINTS, fallback=UploadRoute(site_app()))


class LocalStack:
    """Database (embedded unless DATABASE_URL), migrations, storage, engine workers and the HTTP server.

    With ``workers`` > 1, :meth:`serve` runs that many HTTP worker processes on one listening socket; this
    process owns Postgres and the migrations, worker 0 runs the local engine and housekeeping, and the others
    hand local-engine jobs and cancels to it (see shared.providers.local.engine_provider).
    """

    def __init__(
        self, settings: Settings | None = None, *, host: str = "127.0.0.1", port: int = 0, workers: int = 1
    ) -> None:
        self.settings = settings or get_settings()
        self.host = host
        self.port = port or free_port(host)
        self.base_url = f"http://{host}:{self.port}"
        self.workers = max(1, workers)
        self.embedded: Any = None
        self.database_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._housekeeper: threading.Thread | None = None
        self._sender: WebhookSender | None = None
        self._stop = threading.Event()

    def prepare(self) -> None:
        """Start (or connect to) Postgres, apply migrations, configure storage and start the engine."""
        self.prepare_database()
        self.prepare_worker(engine=True)

    def prepare_database(self) -> str:
        """Start (or connect to) Postgres, apply migrations, sync the catalog, clear dead jobs' scratch space."""
        logs.configure(self.settings.log_level)
        url = self.settings.database_url
        if not url:
            from infra.postgres import EmbeddedPostgres

            self.embedded = EmbeddedPostgres(self.settings.home / "pgdata")
            url = self.embedded.url
        database = self._connect(url)
        applied = migrate(database)
        if applied:
            log.info("migrations applied: %s", ", ".join(applied))
        sync_models(database)
        removed = scratch.remove_stale_work_dirs()
        if removed:
            log.info("removed %d scratch directories of jobs no longer running", removed)
        self.database_url = url
        return url

    def _connect(self, url: str) -> dbmod.Database:
        return dbmod.configure(
            url,
            max_size=self.settings.db_pool_size,
            statement_timeout_ms=self.settings.db_statement_timeout_ms,
            transaction_pooler=self.settings.uses_transaction_pooler(),
        )

    def prepare_worker(
        self, *, engine: bool, inbox: socket.socket | None = None, channel: socket.socket | None = None
    ) -> None:
        """Configure storage; with ``engine``, start the local engine and housekeeping here, else reach the
        engine through ``channel`` (when given)."""
        set_runtime_base_url(self.base_url)
        storage.configure(self.settings)
        if self.settings.local_engine:
            if engine:
                get_local_engine().start(self.settings.local_engine_workers, inbox=inbox, sink=updates.apply)
            elif channel is not None:
                get_local_engine().connect(channel)
        if engine:
            if self.settings.webhook_sender:
                self._sender = WebhookSender(
                    dbmod.get_db().url, listen=not self.settings.uses_transaction_pooler()
                )
                self._sender.start()
            self._housekeeper = threading.Thread(
                target=self._housekeeping, name="i2v-housekeeping", daemon=True
            )
            self._housekeeper.start()

    def _housekeeping(self) -> None:
        """Reconcile hosted jobs every RECONCILE_INTERVAL_S (and send due webhooks when no sender runs); purge
        expired idempotency keys and old Stripe event ids every 10 minutes; check the ledger every
        LEDGER_CHECK_INTERVAL_S."""
        last_purge = 0.0
        while not self._stop.wait(self.settings.reconcile_interval_s):
            try:
                purge = time.monotonic() - last_purge > 600
                reconcile.housekeeping(purge=purge, webhooks=self._sender is None)
                if purge:
                    last_purge = time.monotonic()
                operations.check_ledger()
            except errors.I2VError as exc:
                log.warning("housekeeping failed: %s", exc.message)

    def serve(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM, then shut down: requests in flight finish (within
        SHUTDOWN_GRACE_S), workers and the engine stop, Postgres stops last."""
        with _StopSignals() as stop:
            try:
                if self.workers == 1:
                    self.start_background()
                    log.info("i2v serving at %s/functions/v1/", self.base_url)
                    assert self._thread is not None
                    while not stop.wait(0.5) and self._thread.is_alive():
                        pass
                else:
                    self._serve_workers(stop)
                if stop.received:
                    log.info("stopping on %s", stop.received)
            finally:
                self.shutdown()

    def _serve_workers(self, stop: _StopSignals) -> None:
        """Run ``workers`` HTTP worker processes on one socket until ``stop``; restart any that dies."""
        import multiprocessing

        url = self.prepare_database()
        dbmod.get_db().close()  # the workers have their own pools; this process only owns the server
        from infra.prometheus import METRICS_DIR_ENV

        shared_metrics = self.settings.home / "run" / f"metrics-{os.getpid()}"
        shutil.rmtree(shared_metrics, ignore_errors=True)
        shared_metrics.mkdir(parents=True)
        os.environ[METRICS_DIR_ENV] = str(shared_metrics)  # the workers inherit it: /metrics sums them all
        listener = _listen(self.host, self.port)
        inbox, channel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        context = multiprocessing.get_context("spawn")

        def spawn(index: int) -> Any:
            spec = _WorkerSpec(index, self.host, self.port, self.base_url, url, os.getpid())
            process = context.Process(
                target=_worker_main,
                args=(spec, listener, inbox if index == 0 else channel),
                name=f"i2v-worker-{index}",
            )
            process.start()
            return process

        processes = {index: spawn(index) for index in range(self.workers)}
        restart_at: dict[int, float] = {}
        backoff: dict[int, float] = {}
        log.info("i2v serving at %s/functions/v1/ with %d workers", self.base_url, self.workers)
        try:
            while not stop.wait(0.5):
                for index, process in list(processes.items()):
                    if process.is_alive():
                        continue
                    now = time.monotonic()
                    if index not in restart_at:
                        delay = backoff[index] = min(30.0, backoff.get(index, 0.5) * 2)
                        restart_at[index] = now + delay
                        log.warning(
                            "worker %d exited with status %s; restarting in %.0f s",
                            index,
                            process.exitcode,
                            delay,
                        )
                    elif now >= restart_at.pop(index):
                        processes[index] = spawn(index)
        finally:
            for process in processes.values():
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + SHUTDOWN_GRACE_S + 15
            for process in processes.values():
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    log.warning("worker %s did not stop in time; killing it", process.name)
                    process.kill()
                    process.join(5)
            listener.close()
            inbox.close()
            channel.close()
            os.environ.pop(METRICS_DIR_ENV, None)
            shutil.rmtree(shared_metrics, ignore_errors=True)

    def _uvicorn_server(self, shared_socket: bool = False) -> uvicorn.Server:
        config = uvicorn.Config(
            create_app(),
            host=self.host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            http="infra.http_protocol:JsonErrorH11Protocol",  # malformed HTTP answered in the JSON error shape
            # asyncio accepts up to `backlog` connections each time the socket is ready: on a socket shared by
            # several workers the first one awake would take a whole burst. A few at a time spreads them.
            backlog=ACCEPT_BATCH if shared_socket else LISTEN_BACKLOG,
        )
        return uvicorn.Server(config)

    def start_background(self, sockets: list[socket.socket] | None = None, *, prepared: bool = False) -> str:
        """Serve on a background thread (tests, the demo, each worker); return the base URL once it answers."""
        if not prepared:
            self.prepare()
        self._server = self._uvicorn_server(shared_socket=sockets is not None)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": sockets}, name="i2v-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        # asyncio set the kernel's queue of a shared socket to the accept batch: give it its length back.
        for sock in sockets or ():
            sock.listen(LISTEN_BACKLOG)
        return self.base_url

    def shutdown(self) -> None:
        """Stop the HTTP server (requests in flight finish), the engine, housekeeping, the pool and, last, the
        embedded database."""
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(SHUTDOWN_GRACE_S + 5)
        get_local_engine().stop()
        if self._housekeeper is not None:
            self._housekeeper.join(10)
        if self._sender is not None:
            self._sender.stop()
        billing.close()
        with contextlib.suppress(errors.I2VError):
            dbmod.get_db().close()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


#: How long requests in flight may take to finish once the server is asked to stop.
SHUTDOWN_GRACE_S = 10
#: The kernel's queue of connections not yet accepted, and how many a worker accepts at a time on a shared socket.
LISTEN_BACKLOG = 2048
ACCEPT_BATCH = 1


class _StopSignals:
    """SIGINT and SIGTERM (or the signals given) ask for a clean stop (an event to wait on) instead of ending the
    process at once."""

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self._signals = signals
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}
        self.received = ""

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = self.received or signal.Signals(signum).name
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """True once a stop was asked for (waits up to ``timeout``)."""
        return self._event.wait(timeout)


@dataclass(frozen=True)
class _WorkerSpec:
    """What a worker process needs to serve: its index (0 runs the engine), where to listen, the database."""

    index: int
    host: str
    port: int
    base_url: str
    database_url: str
    parent_pid: int


def _worker_main(spec: _WorkerSpec, listener: socket.socket, engine_socket: socket.socket) -> None:
    """One HTTP worker process: serve on the shared socket until SIGTERM (or the parent is gone), then stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
    with _StopSignals((signal.SIGTERM,)) as stop:
        stack = LocalStack(host=spec.host, port=spec.port)
        stack.base_url = spec.base_url
        logs.configure(stack.settings.log_level)
        stack._connect(spec.database_url)
        engine = spec.index == 0
        from infra.prometheus import METRICS_DIR_ENV, SnapshotWriter

        shared_metrics = os.environ.get(METRICS_DIR_ENV)
        writer = SnapshotWriter(Path(shared_metrics)) if shared_metrics else None
        try:
            if writer is not None:
                writer.start()
            stack.prepare_worker(
                engine=engine,
                inbox=engine_socket if engine else None,
                channel=None if engine else engine_socket,
            )
            stack.start_background([listener], prepared=True)
            assert stack._thread is not None
            while not stop.wait(0.5) and stack._thread.is_alive() and os.getppid() == spec.parent_pid:
                pass
        finally:
            stack.shutdown()
            if writer is not None:
                writer.stop()


def _listen(host: str, port: int) -> socket.socket:
    """A TCP listening socket for the workers to share.

    It is made as asyncio makes its own (protocol IPPROTO_TCP), and with TCP_NODELAY, which accepted connections
    inherit: asyncio switches Nagle's algorithm off only on sockets whose protocol says TCP, and with it on, each
    response written in two parts (head, body) would wait for the client's delayed ACK (about 40 ms).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
