"""S3 storage against moto's S3 server over real HTTP (boto3 unmodified)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator

import httpx
import pytest

from shared import errors
from shared.storage import S3Storage
from tests.conftest import EXAMPLES


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
    target = s3.upload_target(key, "image/jpeg", len(data), 300)
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
