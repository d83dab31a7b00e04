"""Memory of the local server under hostile request bodies: RSS of a real ``i2v serve`` process while clients try
to make it hold a 1 GiB body (unsigned upload PUT, chunked PUT past a signed URL's size, chunked API body).

Each attack streams up to ``ATTACK_BYTES`` and stops when the server answers or closes the connection; the
result records how many bytes the server took before refusing, its answer, and the server's RSS before, at
its peak (sampled every 50 ms) and after. Results: bench/results/hostile_bodies.json.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench._serve import serve
from bench._stack import RESULTS, machine

ATTACK_BYTES = 1024**3
CHUNK = 1024 * 1024


class RssSampler:
    """Samples a process's RSS (MiB) in the background."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float:
        """Current RSS in MiB (the server and its children, embedded Postgres excluded)."""
        return round(self.proc.memory_info().rss / 2**20, 1)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssSampler:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def attack(base: str, head: bytes, *, chunked: bool) -> dict[str, Any]:
    """Send ``head`` then up to ATTACK_BYTES of body; return bytes sent and the server's status line."""
    parts = urlsplit(base)
    sent = 0
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        payload = b"x" * CHUNK
        frame = f"{CHUNK:x}\r\n".encode() + payload + b"\r\n" if chunked else payload
        deadline = time.monotonic() + 120
        while sent < ATTACK_BYTES and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                sock.sendall(frame)
                sent += CHUNK
            except BlockingIOError:
                time.sleep(0.005)
            except OSError:
                break
        sock.setblocking(True)
        sock.settimeout(5)
        try:
            while b"\r\n" not in answer and (more := sock.recv(65536)):
                answer += more
        except OSError:
            pass
    return {"body_bytes_sent": sent, "answer": answer.split(b"\r\n", 1)[0].decode("latin-1")}


def main() -> None:
    """Run the attacks against a fresh ``i2v serve`` and save the results."""
    user = uuid.UUID("11111111-2222-3333-4444-555555555555")
    with serve(LOG_LEVEL="WARNING") as server, server.client(user) as client:
        data = b"0123456789"
        body = {"content_type": "image/jpeg", "size": 10, "sha256": hashlib.sha256(data).hexdigest()}
        target = client.post("/functions/v1/create-upload-url", json=body).json()
        signed = urlsplit(target["upload_url"])
        key = f"uploads/{user}/{body['sha256']}.jpg"
        attacks = {
            "unsigned_put_content_length_1GiB": (
                f"PUT /storage/v1/upload/{key}?exp=9999999999&size={ATTACK_BYTES}&sig=00 HTTP/1.1\r\n"
                f"Host: x\r\nContent-Type: image/jpeg\r\nContent-Length: {ATTACK_BYTES}\r\n\r\n",
                False,
            ),
            "signed_size_10_chunked_1GiB": (
                f"PUT {signed.path}?{signed.query} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                "Transfer-Encoding: chunked\r\n\r\n",
                True,
            ),
            "generate_video_chunked_1GiB": (
                "POST /functions/v1/generate-video HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n",
                True,
            ),
        }
        sampler = RssSampler(server.proc.pid)
        results: dict[str, Any] = {"rss_mib_start": sampler.now()}
        for name, (head, chunked) in attacks.items():
            with sampler:
                outcome = attack(server.base_url, head.encode(), chunked=chunked)
            outcome["rss_mib_peak"] = sampler.peak
            outcome["rss_mib_after"] = sampler.now()
            results[name] = outcome
            print(name, outcome, flush=True)
        results["rss_mib_end"] = sampler.now()
    out = {"benchmark": "hostile_bodies", "machine": machine(), "attack_bytes": ATTACK_BYTES, **results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hostile_bodies.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
