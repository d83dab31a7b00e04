"""Input images: URL safety (no private networks), upload verification, bounded fetching and sniffing."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING
from urllib.parse import SplitResult, urljoin, urlsplit

from shared import errors
from shared.settings import Settings

if TYPE_CHECKING:  # imported where used: most functions never decode or download an image
    import httpx

CONTENT_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
_MAX_REDIRECTS = 3
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_REFUSED = (
    ipaddress.IPv4Network("192.0.0.0/24"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("fec0::/10"),
)


@dataclass(frozen=True)
class ImageInfo:
    """What sniffing an image's bytes found."""

    content_type: str
    width: int
    height: int


def sniff(data: bytes, max_pixels: int, field: str = "image_url") -> ImageInfo:
    """Identify a JPEG/PNG/WebP from its bytes and check its pixel count; refuse anything else."""
    return sniff_file(io.BytesIO(data), max_pixels, field=field)


def sniff_file(fh: IO[bytes], max_pixels: int, field: str = "image_url") -> ImageInfo:
    """``sniff`` for an open binary file: reads the header, not the whole image."""
    head = fh.read(12)
    fh.seek(0)
    if head.startswith(b"\xff\xd8\xff"):
        content_type = "image/jpeg"
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        content_type = "image/png"
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        content_type = "image/webp"
    else:
        raise errors.InvalidField(
            field, "The content is not a JPEG, PNG or WebP image.", allowed=list(CONTENT_TYPES)
        )
    from PIL import Image

    try:
        with Image.open(fh) as img:
            width, height = img.size
    except (OSError, Image.DecompressionBombError) as exc:
        raise errors.InvalidField(field, "The image cannot be decoded.") from exc
    if width * height > max_pixels:
        raise errors.InvalidField(
            field,
            f"The image has {width}x{height} pixels; the limit is {max_pixels} pixels.",
            max_pixels=max_pixels,
        )
    return ImageInfo(content_type, width, height)


def check_upload(data: bytes, *, sha256: str, content_type: str, size: int, max_pixels: int) -> ImageInfo:
    """Check that stored upload bytes have the declared hash, size and type."""
    if len(data) != size:
        raise errors.InvalidField(
            "image_url", f"The uploaded object has {len(data)} bytes, not the declared {size}."
        )
    if hashlib.sha256(data).hexdigest() != sha256:
        raise errors.InvalidField("image_url", "The uploaded object does not match its declared sha256.")
    info = sniff(data, max_pixels)
    if info.content_type != content_type:
        raise errors.InvalidField(
            "image_url", f"The uploaded object is {info.content_type}, not {content_type}."
        )
    return info


def split_url(url: str, field: str = "image_url") -> SplitResult:
    """``urlsplit`` of a URL from a request, with its host and port checked: a 400 naming ``field`` when the URL
    cannot be taken apart (a broken IPv6 literal, a port that is not a number from 1 to 65535)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", "Port could not be cast ..."
        raise errors.InvalidField(field, f"The URL is malformed: {exc}.") from exc
    if port == 0:
        raise errors.InvalidField(field, "The URL is malformed: the port must be from 1 to 65535.")
    return parts


def check_public_url(
    url: str, settings: Settings, *, field: str = "image_url", what: str = "image"
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Refuse non-https URLs and hosts that resolve to private, loopback, link-local or reserved addresses
    (``what`` names the URL in the refusal: an image's, a webhook's).

    Returns the addresses the host resolved to (all of them allowed), for the fetch to connect to; none when
    ALLOW_PRIVATE_IMAGE_URLS is set (nothing is checked, the name is looked up when connecting).
    """
    parts = split_url(url, field)
    if parts.scheme != "https" or not parts.hostname:
        raise errors.InvalidField(field, f"The {what} URL must be an https:// URL.", allowed=["https"])
    if parts.username or parts.password:
        raise errors.InvalidField(field, f"The {what} URL must not carry credentials.")
    if settings.allow_private_image_urls:
        return []
    addresses = _resolve(parts.hostname, parts.port or 443, field, what)
    for address in addresses:
        if not is_public_address(address):
            raise errors.InvalidField(
                field, f"The {what} URL points at a private or reserved network address."
            )
    return addresses


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is globally reachable unicast, including any IPv4 address an IPv6 one carries.

    Beyond ``is_global``: the IPv4 address inside NAT64 (64:ff9b::/96), 6to4 (2002::/16) and Teredo (2001::/32)
    addresses must be public too, since a gateway would forward to it; local-use NAT64 (64:ff9b:1::/48),
    IPv4-compatible (::/96) and site-local (fec0::/10) addresses, and all of 192.0.0.0/24 (IETF protocol
    assignments, some of which ``is_global`` accepts), are refused outright.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        embedded: list[ipaddress.IPv4Address] = []
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if not all(is_public_address(inner) for inner in embedded):
            return False
    if not address.is_global or address.is_multicast:
        return False
    return not any(address in network for network in _REFUSED if network.version == address.version)


def _resolve(
    host: str, port: int, field: str, what: str = "image"
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:  # an IP literal needs no lookup
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        mapped = literal.ipv4_mapped if isinstance(literal, ipaddress.IPv6Address) else None
        return [mapped or literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise errors.InvalidField(field, f"The image host {host!r} cannot be resolved.") from exc
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        addresses.append(address)
    return addresses


def fetch(url: str, settings: Settings, *, max_bytes: int, client: httpx.Client | None = None) -> bytes:
    """Download a public image with bounded size, checking every redirect target like the first URL.

    The connection goes to an address the check allowed, not to a second lookup of the name (which a DNS
    rebinding attack could point at a private address): the URL's host stays in the Host header and in TLS
    (SNI and the certificate check).
    """
    import httpx

    from shared.http import make_client

    own = client or make_client(20.0, connect=5.0)
    try:
        for _ in range(_MAX_REDIRECTS + 1):
            addresses = check_public_url(url, settings)
            target, headers, extensions = pinned_request(url, addresses[0]) if addresses else (url, {}, {})
            with own.stream("GET", target, headers=headers, extensions=extensions) as resp:
                if resp.is_redirect and "location" in resp.headers:
                    url = urljoin(url, resp.headers["location"])
                    continue
                if resp.status_code != 200:
                    raise errors.InvalidField(
                        "image_url", f"Fetching the image answered HTTP {resp.status_code}."
                    )
                return _read_bounded(resp, max_bytes)
        raise errors.InvalidField("image_url", "Fetching the image redirected too many times.")
    except httpx.HTTPError as exc:
        raise errors.InvalidField("image_url", "The image could not be downloaded.") from exc
    finally:
        if client is None:
            own.close()


def pinned_request(
    url: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> tuple[str, dict[str, str], dict[str, str]]:
    """``url`` aimed at ``address``: the URL to request, its Host header and the TLS server name (httpx's
    ``sni_hostname`` extension, which is also the name the certificate is checked against)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl(), {"Host": parts.netloc}, {"sni_hostname": parts.hostname}


def _read_bounded(resp: httpx.Response, max_bytes: int) -> bytes:
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise errors.PayloadTooLarge(f"The image is larger than {max_bytes} bytes.")
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > max_bytes:
            raise errors.PayloadTooLarge(f"The image is larger than {max_bytes} bytes.")
    return bytes(buf)
