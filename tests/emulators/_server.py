"""What the protocol emulators share: one uvicorn server on a background thread, and media serving.

``BackgroundServer`` is the base class of ``FalEmulator``, ``ReplicateEmulator`` and ``AppStoreAPIEmulator``:
it binds a loopback socket on a free port (or the given one), optionally serves HTTPS with a throwaway
self-signed certificate, runs uvicorn on a daemon thread and waits until it accepts connections; ``stop``
shuts it down and releases the thread, socket and certificate directory. The emulator subclass sets
``app`` and names itself with the class attributes ``_server_label`` and ``_server_thread``.

``serve_media`` answers a GET/HEAD for a ``MediaFile`` (missing, delayed, truncated, single byte ranges),
the way both the fal CDN and Replicate's delivery host do.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from tests.emulators.fal import MediaFile


def self_signed_cert(directory: Path, host: str) -> tuple[Path, Path]:
    """Write a self-signed certificate (its own CA) for ``host`` and localhost; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fal emulator")])
    now = datetime.now(UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_path, key_path


class BackgroundServer:
    """One uvicorn server for ``self.app`` on a daemon thread; the base class of the emulators.

    After ``start``: ``port`` is the bound port, ``base_url`` the ``http(s)://host:port`` to reach it and,
    with ``tls``, ``ca_file`` the certificate to trust (SSL_CERT_FILE). ``start`` and ``stop`` are idempotent.
    """

    _server_label: ClassVar[str] = "emulator"  # in the start failure: "<label> failed to start"
    _server_thread: ClassVar[str] = "emulator"  # the thread's name, and the TLS directory's prefix
    _server_lifespan: ClassVar[Literal["on", "off"]] = "on"

    app: ASGIApp

    def __init__(
        self, *, host: str, port: int, tls: bool = False, log_filter: logging.Filter | None = None
    ) -> None:
        self.tls = tls
        self.ca_file: str | None = None  # with tls: the certificate to trust (SSL_CERT_FILE)
        self.base_url = ""
        self.port = 0
        self._host = host
        self._port = port
        self._log_filter = log_filter
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self) -> Self:
        """Start serving on a free port; returns self once uvicorn accepts connections."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self._host, self._port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        tls_files: dict[str, Any] = {}
        if self.tls:
            self._tls_dir = tempfile.TemporaryDirectory(prefix=f"{self._server_thread}-")
            cert, key = self_signed_cert(Path(self._tls_dir.name), self._host)
            self.ca_file = str(cert)
            tls_files = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        self.base_url = f"{'https' if self.tls else 'http'}://{self._host}:{self.port}"
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan=self._server_lifespan,
            http="h11",
            ws="none",
            timeout_graceful_shutdown=2,
            **tls_files,
        )
        self._server = uvicorn.Server(config)
        if self._log_filter is not None:
            logging.getLogger("uvicorn.error").addFilter(self._log_filter)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self._server_thread, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._server_label} failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop the server and release its thread and socket (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5)
        if self._socket is not None:
            self._socket.close()
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None
        if self._log_filter is not None:
            logging.getLogger("uvicorn.error").removeFilter(self._log_filter)
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------------------
# Media files: ranges and deliberate truncation
# ----------------------------------------------------------------------------------------------------


class TruncatedError(Exception):
    """Raised mid-body to drop the connection of a truncated download."""


class DropTruncatedLogs(logging.Filter):
    """Keep the deliberate truncation out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, TruncatedError):
                return False
            if isinstance(exc, BaseExceptionGroup) and any(
                isinstance(e, TruncatedError) for e in exc.exceptions
            ):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


class TruncatedResponse(Response):
    """Announces the full Content-Length, sends part of the body, then drops the connection."""

    def __init__(self, media: MediaFile) -> None:
        super().__init__(status_code=200, media_type=media.content_type)
        self.media = media
        self.headers["content-length"] = str(media.length)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers and the first bytes, then fail so the server closes the connection."""
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        cut = self.media.truncate_at if self.media.truncate_at is not None else self.media.length // 2
        for chunk in self.media.iter_chunks(0, cut):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        raise TruncatedError("download truncated on purpose")


async def serve_media(request: Request, media: MediaFile | None) -> Response:
    """Answer a GET/HEAD for ``media``: 404 when missing, its delay and truncation faults, single byte ranges."""
    if media is None or media.fault == "not_found":
        return Response("Not Found", status_code=404, media_type="text/plain")
    if media.delay_s:
        await asyncio.sleep(media.delay_s)
    if media.fault == "truncate":
        return TruncatedResponse(media)
    start, end, status = 0, media.length, 200
    headers = {"Accept-Ranges": "bytes"}
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", "").strip())
    if match and (match.group(1) or match.group(2)):
        if match.group(1):
            start = int(match.group(1))
            end = min(media.length, int(match.group(2)) + 1) if match.group(2) else media.length
        else:
            start = max(0, media.length - int(match.group(2)))
        if start >= media.length or start >= end:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{media.length}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{media.length}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media.content_type)
    return StreamingResponse(
        media.iter_chunks(start, end), status_code=status, headers=headers, media_type=media.content_type
    )
