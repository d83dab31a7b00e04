"""Where a webhook may be sent: the SSRF rules of image fetches (https, public addresses only, the connection
pinned to a checked address, no redirects followed)."""

from __future__ import annotations

import ipaddress

from shared import errors
from shared.media import images
from shared.settings import get_settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_destination(url: str, field: str = "url") -> list[Address]:
    """Refuse a webhook URL that is not https or resolves to a private, loopback or reserved address; return the
    addresses to connect to (none when ALLOW_PRIVATE_WEBHOOK_URLS lets any http(s) URL through, for tests and
    local development)."""
    settings = get_settings()
    if settings.allow_private_webhook_urls:
        parts = images.split_url(url, field)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.InvalidField(field, "A webhook URL must be an http(s):// URL.", allowed=["https"])
        return []
    strict = settings.model_copy(update={"allow_private_image_urls": False})
    return images.check_public_url(url, strict, field=field, what="webhook")


def pinned(url: str, addresses: list[Address]) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL to request, its Host header and TLS server name: aimed at the first checked address, so a second
    DNS answer cannot point the connection somewhere private."""
    if not addresses:
        return url, {}, {}
    return images.pinned_request(url, addresses[0])
