"""The local server's upload route, ``PUT /storage/v1/upload/{key}``, as plain ASGI.

Plain ASGI rather than a framework route, so that nothing reads the body before the checks that need none
(signature, expiry, declared size and type, Content-Length) have passed, and so that the body is streamed
through ``shared.media.uploads.LocalUploadReceiver`` one chunk at a time: an unsigned or oversized PUT is refused
before its first byte is read, and a body is never held in memory.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from shared import errors
from shared.media import storage
from shared.media.uploads import LocalUploadReceiver
from shared.web import (
    ASGIApp,
    Receive,
    Response,
    Scope,
    Send,
    error_response,
    request_headers,
    request_id,
    send_response,
)

PREFIX = "/storage/v1/upload/"


class UploadRoute:
    """Serves signed upload PUTs itself and passes every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection."""
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = request_headers(scope)
        rid = request_id(headers, scope)
        try:
            if scope["method"] != "PUT":
                raise errors.MethodNotAllowed()
            await self._receive(scope, headers, receive)
            answer = Response(200, {"x-request-id": rid}, b'{"stored":true}')
        except Exception as exc:  # rendered in the one error shape (5xx logged with their cause)
            answer = error_response(exc, rid, scope["path"])
        answer.headers.setdefault("content-type", "application/json")
        answer.headers.setdefault("cache-control", "no-store")
        await send_response(send, answer)

    async def _receive(self, scope: Scope, headers: dict[str, str], receive: Receive) -> None:
        local = storage.get_storage()
        if not isinstance(local, storage.LocalStorage):
            raise errors.NotFound("Local storage is not in use.")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        key = scope["path"][len(PREFIX) :]  # ASGI paths arrive percent-decoded
        loop = asyncio.get_running_loop()
        receiver = await loop.run_in_executor(
            None,
            lambda: LocalUploadReceiver(
                local,
                key,
                content_type=headers.get("content-type", "").split(";")[0].strip(),
                expires=query.get("exp", ""),
                size=query.get("size", ""),
                sig=query.get("sig", ""),
                content_length=headers.get("content-length"),
            ),
        )
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise errors.BadRequest("The client went away before the upload finished.")
                receiver.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except BaseException:
            receiver.abort()
            raise
        await loop.run_in_executor(None, receiver.finish)
