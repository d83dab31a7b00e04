"""A lean HTTP/1.1 load generator: N keep-alive connections on loopback, each sending requests back to back.

It runs in its own process (``python -m bench._http_load < spec.json``, JSON result on stdout) so that its CPU
is not charged to the server it measures, and it does as little as it can per request: requests are byte
templates filled with a per-request sequence number, responses are read by Content-Length. Every response is
counted by status; a broken connection counts as an error and is reopened.

The spec: ``{"host", "port", "connections", "duration_s", "warmup_s", "templates": [[b64, ...] per connection]}``.
Each template is a whole request; ``{seq}`` in it (a header value, never the body) is replaced by a unique
counter. A connection cycles through its own list of templates.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

_SEQ = b"{seq}"


@dataclass
class Tally:
    """What the connections saw while measuring."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)


class _Client(asyncio.Protocol):
    """One keep-alive connection sending its requests back to back; responses are framed by Content-Length."""

    def __init__(self, index: int, templates: list[bytes], start: float, stop: float, tally: Tally) -> None:
        self.index = index
        self.templates = templates
        self.start = start
        self.stop = stop
        self.tally = tally
        self.seq = 0
        self.buffer = b""
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if time.perf_counter() >= self.stop:
            self.closing = True
            self.transport.close()
            return
        template = self.templates[self.seq % len(self.templates)]
        self.seq += 1
        self.sent = time.perf_counter()
        self.transport.write(template.replace(_SEQ, f"{self.index}-{self.seq}".encode()))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            self.buffer = self.buffer[end + 4 + length :]
            if self.sent >= self.start:
                self.tally.statuses[status] = self.tally.statuses.get(status, 0) + 1
                self.tally.latencies.append(time.perf_counter() - self.sent)
            if b"\r\nconnection: close" in head:  # the server ends this connection: open another one
                self.closing = True
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.closing or (exc is None and time.perf_counter() >= self.stop))


def _content_length(head: bytes) -> int:
    """The Content-Length of a response head (lower-cased), 0 when absent."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    line_end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : line_end if line_end > 0 else None])


async def _connection(
    index: int, spec: dict[str, Any], templates: list[bytes], start: float, stop: float, tally: Tally
) -> None:
    """Keep one connection busy until ``stop``, reconnecting (and counting an error) when it breaks."""
    loop = asyncio.get_running_loop()
    while time.perf_counter() < stop:
        client = _Client(index, templates, start, stop, tally)
        try:
            await loop.create_connection(lambda c=client: c, spec["host"], int(spec["port"]))
            clean = await client.done
        except OSError as exc:
            clean = False
            if len(tally.error_samples) < 5:
                tally.error_samples.append(f"{type(exc).__name__}: {exc}")
        if not clean and time.perf_counter() < stop:
            if time.perf_counter() >= start:
                tally.errors += 1
            await asyncio.sleep(0.01)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive the load described by ``spec``; returns counts, throughput and latency percentiles."""
    templates = [[base64.b64decode(t) for t in conn] for conn in spec["templates"]]
    connections = int(spec["connections"])
    begin = time.perf_counter()
    start = begin + float(spec.get("warmup_s", 0))
    stop = start + float(spec["duration_s"])
    tally = Tally()
    await asyncio.gather(
        *(_connection(i, spec, templates[i % len(templates)], start, stop, tally) for i in range(connections))
    )
    measured = time.perf_counter() - start
    ordered = sorted(tally.latencies)

    def pct(q: float) -> float:
        if not ordered:
            return float("nan")
        return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000, 2)

    total = sum(tally.statuses.values())
    return {
        "connections": connections,
        "duration_s": round(measured, 2),
        "requests": total,
        "req_per_s": round(total / measured, 1),
        "status_codes": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
    }


def request_bytes(
    method: str, path: str, host: str, headers: dict[str, str], body: bytes | None = None
) -> bytes:
    """One HTTP/1.1 request as bytes (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def encode_templates(templates: list[list[bytes]]) -> list[list[str]]:
    """Templates as the spec carries them (base64)."""
    return [[base64.b64encode(t).decode() for t in conn] for conn in templates]


def main() -> None:
    """Read the spec from stdin, run, print the result as JSON."""
    spec = json.load(sys.stdin)
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
