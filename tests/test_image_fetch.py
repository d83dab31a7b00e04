"""Fetching an image URL connects only to the address that passed the private-network check."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from shared import errors
from shared.media import images
from shared.settings import Settings
from tests.emulators.fal import self_signed_cert

PUBLIC = "93.184.215.14"  # a global address: passes the check


class _Image(BaseHTTPRequestHandler):
    seen_hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen_hosts.append(self.headers.get("Host", ""))
        body = b"\x89PNG-bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS image server on 127.0.0.1 whose certificate names only img.test: (port, CA file)."""
    cert, key = self_signed_cert(tmp_path, "img.test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Image)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _Image.seen_hosts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


def test_pinned_request_keeps_host_header_and_tls_name(tls_server: tuple[int, Path]) -> None:
    """A request aimed at the checked IP still sends Host img.test and verifies img.test's certificate."""
    port, ca = tls_server
    url, headers, extensions = images.pinned_request(
        f"https://img.test:{port}/a.png", ipaddress.ip_address("127.0.0.1")
    )
    assert url == f"https://127.0.0.1:{port}/a.png"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as client:
        response = client.get(url, headers=headers, extensions=extensions)
    assert response.status_code == 200 and response.content == b"\x89PNG-bytes"
    assert _Image.seen_hosts == [f"img.test:{port}"]


def test_pinned_request_refuses_a_certificate_for_another_name(tls_server: tuple[int, Path]) -> None:
    """The certificate is checked against the URL's host, not the IP: a server for img.test fails other.test."""
    port, ca = tls_server
    url, headers, extensions = images.pinned_request(
        f"https://other.test:{port}/a.png", ipaddress.ip_address("127.0.0.1")
    )
    with (
        httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(url, headers=headers, extensions=extensions)


def test_ipv6_addresses_are_bracketed() -> None:
    """An IPv6 address becomes a bracketed URL host, with the port kept."""
    url, headers, _ = images.pinned_request(
        "https://img.test:8443/x?y=1", ipaddress.ip_address("2606:4700::1")
    )
    assert url == "https://[2606:4700::1]:8443/x?y=1"
    assert headers == {"Host": "img.test:8443"}


def test_a_name_rebound_to_loopback_after_the_check_is_never_contacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the first lookup says public, later ones say 127.0.0.1; nothing reaches 127.0.0.1."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    real = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return real(host, *args, **kwargs)
        lookups.append(host)
        address = PUBLIC if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = Settings(allow_private_image_urls=False)
    with httpx.Client(timeout=httpx.Timeout(2.0)) as client, pytest.raises(errors.I2VError):
        images.fetch(f"https://rebind.test:{port}/a.png", settings, max_bytes=1000, client=client)
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert lookups == ["rebind.test"]
