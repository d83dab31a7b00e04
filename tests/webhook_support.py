"""A local HTTP endpoint that receives outgoing webhooks in tests: it answers what a test queues, records the rest."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import configured


@dataclass
class Receiver:
    """A local HTTP endpoint answering the statuses queued in ``answers`` (then 204), recording each request."""

    url: str
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@contextmanager
def receiving() -> Iterator[Receiver]:
    """A webhook receiver on a free local port (webhook URLs may be private while it runs)."""
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, headers = state.answers.pop(0) if state.answers else (204, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/i2v"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with configured(ALLOW_PRIVATE_WEBHOOK_URLS="true"):
            yield state
    finally:
        server.shutdown()
        server.server_close()
