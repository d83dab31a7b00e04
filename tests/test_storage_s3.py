"""S3 storage against moto's S3 server over real HTTP (boto3 unmodified)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared import errors
from shared.media import storage
from shared.media.storage import S3Storage
from tests.conftest import EXAMPLES, Caller, configured


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> S3Storage:
    """A bucket on the moto server."""
    storage = S3Storage("i2v-media", endpoint_url=s3_endpoint, region="us-east-1")
    with contextlib.suppress(storage.client.exceptions.BucketAlreadyOwnedByYou):
        storage.client.create_bucket(Bucket="i2v-media")
    return storage


def test_put_info_read_and_presigned_get(s3: S3Storage) -> None:
    """A stored object has its size and type, reads back, and its presigned GET URL serves it."""
    data = (EXAMPLES / "square.jpg").read_bytes()
    assert s3.put_stream("videos/u/j.mp4", io.BytesIO(data), "video/mp4") == len(data)
    info = s3.info("videos/u/j.mp4")
    assert info is not None and info.size == len(data) and info.content_type == "video/mp4"
    assert s3.read("videos/u/j.mp4", len(data)) == data
    assert httpx.get(s3.download_url("videos/u/j.mp4", 60)).content == data
    assert s3.info("videos/u/missing.mp4") is None


def test_presigned_put_uploads_directly(s3: S3Storage) -> None:
    """A client PUTs the bytes to the presigned URL with the given headers; the object then exists."""
    data = (EXAMPLES / "portrait.jpg").read_bytes()
    key = f"uploads/u/{hashlib.sha256(data).hexdigest()}.jpg"
    target = s3.upload_target(key, "image/jpeg", len(data), hashlib.sha256(data).hexdigest(), 300)
    resp = httpx.put(target.url, content=data, headers=target.headers)
    assert resp.status_code == 200, resp.text
    info = s3.info(key)
    assert info is not None and info.size == len(data) and info.content_type == "image/jpeg"


def test_oversized_stream_stores_nothing(s3: S3Storage) -> None:
    """A stream longer than max_bytes is refused and no object appears."""
    with pytest.raises(errors.PayloadTooLarge):
        s3.put_stream("videos/u/big.mp4", io.BytesIO(b"x" * 2048), "video/mp4", max_bytes=1024)
    assert s3.info("videos/u/big.mp4") is None


def test_ref_url_round_trips_to_the_key(s3: S3Storage) -> None:
    """The unsigned reference URL (and a presigned one) name the same key; foreign URLs name none."""
    key = "uploads/u/abc.png"
    assert s3.key_for_url(s3.ref_url(key)) == key
    assert s3.key_for_url(s3.download_url(key, 60)) == key
    assert s3.key_for_url("https://example.com/uploads/u/abc.png") is None


def test_presigned_put_is_bound_to_the_bytes_and_writes_once(s3: S3Storage) -> None:
    """The PUT signs the content's SHA-256 and If-None-Match: *; a second PUT to the key is refused (412)."""
    data = (EXAMPLES / "landscape.jpg").read_bytes()
    digest = hashlib.sha256(data)
    key = f"uploads/u/{digest.hexdigest()}.jpg"
    target = s3.upload_target(key, "image/jpeg", len(data), digest.hexdigest(), 300)
    assert target.headers["x-amz-checksum-sha256"] == base64.b64encode(digest.digest()).decode()
    assert target.headers["If-None-Match"] == "*"
    signed = parse_qs(urlsplit(target.url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"x-amz-checksum-sha256", "if-none-match", "content-type"} <= set(signed)
    assert httpx.put(target.url, content=data, headers=target.headers).status_code == 200
    assert httpx.put(target.url, content=data[::-1], headers=target.headers).status_code == 412
    assert s3.read(key, len(data)) == data


@pytest.fixture
def s3_stack(s3: S3Storage, stack: str, s3_endpoint: str) -> Iterator[S3Storage]:
    """The running stack with its media on the moto bucket (local storage again afterwards)."""
    with configured(STORAGE_BUCKET=s3.bucket, S3_ENDPOINT_URL=s3_endpoint):
        current = storage.configure()
    assert isinstance(current, S3Storage)
    try:
        yield current
    finally:
        storage.configure()
    assert isinstance(storage.get_storage(), storage.LocalStorage)


def test_s3_upload_is_known_after_its_put_and_verified_before_use(
    s3_stack: S3Storage, caller: Caller
) -> None:
    """On S3, create-upload-url after the PUT answers already_uploaded (the object was read back and checked)."""
    data = (EXAMPLES / "portrait.jpg").read_bytes()
    body = {"content_type": "image/jpeg", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    target = caller.http.post("/functions/v1/create-upload-url", json=body).json()
    assert httpx.put(target["upload_url"], content=data, headers=target["upload_headers"]).status_code == 200
    again = caller.http.post("/functions/v1/create-upload-url", json=body).json()
    assert again == {"image_url": target["image_url"], "already_uploaded": True}


def test_s3_object_with_other_bytes_is_removed_not_used(s3_stack: S3Storage, caller: Caller) -> None:
    """Bytes in the bucket that do not match the declared hash are refused at first use and deleted."""
    caller.grant(5)
    data = (EXAMPLES / "square.jpg").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    body = {"content_type": "image/jpeg", "size": len(data), "sha256": sha}
    target = caller.http.post("/functions/v1/create-upload-url", json=body).json()
    key = s3_stack.key_for_url(target["image_url"])
    assert key is not None
    swapped = data[:1000] + data[1000:5000][::-1] + data[5000:]  # a store that skips checksums took these
    s3_stack.put_stream(key, io.BytesIO(swapped), "image/jpeg")
    resp = caller.generate(model_id="local-motion", image_url=target["image_url"], settings={"duration": 1})
    assert resp.status_code == 400 and "sha256" in resp.json()["error"]["message"]
    assert s3_stack.info(key) is None
    assert caller.balance() == 5
    fresh = caller.http.post("/functions/v1/create-upload-url", json=body).json()
    assert fresh["already_uploaded"] is False
    put = httpx.put(fresh["upload_url"], content=data, headers=fresh["upload_headers"])
    assert put.status_code == 200
