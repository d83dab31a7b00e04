"""uvicorn's h11 protocol, answering malformed HTTP in the API's one JSON error shape.

uvicorn answers a request h11 cannot parse (a NUL or a line break in a header, a header name with a space, a
broken request line, headers larger than h11's buffer) with a plain-text 400 and closes the socket at once.
``JsonErrorH11Protocol`` answers instead with ``{"error": {"code": "bad_request", ...}}`` rendered by
shared.web (431 when the headers are too large, as h11 hints), with an X-Request-Id, then closes gracefully:
it stops sending, reads and discards what the client is still sending (bounded in bytes and time), and closes
once the client has read the answer. Closing a socket with unread bytes in it makes the kernel reset the
connection, and a client still sending its oversized headers would then see a reset instead of the answer.

The local server uses it with ``uvicorn.Config(..., http="infra.http_protocol:JsonErrorH11Protocol")``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from http import HTTPStatus
from typing import Any

import h11
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared import errors
from shared.web import error_response

log = logging.getLogger("i2v.http")

LINGER_S = 2.0  # how long a refused connection is drained before it is closed
LINGER_MAX_BYTES = 16 * 1024 * 1024  # how much of a refused request is read and discarded at most


class HeadersTooLarge(errors.BadRequest):
    """The request's headers are larger than the server accepts."""

    status = 431


class _Connection(h11.Connection):
    """An h11 server connection that remembers the protocol error it raised last (for its status hint)."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class JsonErrorH11Protocol(H11Protocol):
    """H11Protocol whose answer to malformed HTTP is the JSON error shape, followed by a graceful close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes: int = (
            self.config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        )
        self._h11 = _Connection(h11.SERVER, self.max_header_bytes)
        self.conn = self._h11
        self._draining = False
        self._drained = 0
        self._linger: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        """Feed h11, or, once the request was refused, discard what the client still sends."""
        if self._draining:
            self._drained += len(data)
            if self._drained > LINGER_MAX_BYTES:
                self.transport.close()
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the pending forced close, then let uvicorn clean up."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """Answer the malformed request (uvicorn calls this on h11's RemoteProtocolError) in the JSON shape."""
        cause = self._h11.last_error
        # h11 says what is wrong before a colon and quotes the offending bytes after it: only the first part is
        # repeated (a header line may hold a token, which is never echoed or logged).
        detail = str(cause).split(":", 1)[0].strip() if cause is not None else ""
        detail = detail or "the request could not be parsed"
        err: errors.I2VError
        if cause is not None and cause.error_status_hint == 431:
            err = HeadersTooLarge(
                "The request headers are larger than this server accepts.",
                max_bytes=self.max_header_bytes,
            )
        else:
            err = errors.BadRequest(f"Malformed HTTP request: {detail}.")
        rid = uuid.uuid4().hex
        log.info(
            "malformed HTTP request: %s",
            detail,
            extra={"event": "bad_http", "request_id": rid, "status": err.status},
        )
        answer = error_response(err, rid, "")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer.body)).encode()),
            (b"cache-control", b"no-store"),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.items()),
            (b"connection", b"close"),
        ]
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app, if it still runs for this request, is not heard
            self.cycle.message_event.set()  # and a read of the body it is waiting for ends
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):  # a response has begun: nothing to add
            self.transport.close()
            return
        for event in (
            h11.Response(status_code=err.status, headers=headers, reason=HTTPStatus(err.status).phrase),
            h11.Data(data=answer.body),
            h11.EndOfMessage(),
        ):
            data = self.conn.send(event)
            if data:
                self.transport.write(data)
        self._close_gracefully()

    def _close_gracefully(self) -> None:
        """Stop sending, drain the rest of the request for a while, then close (no reset over the answer)."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._draining = True
        self.flow.resume_reading()
        self.transport.write_eof()
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)
