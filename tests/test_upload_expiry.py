"""Abandoned uploads on AWS S3: tagged unverified at PUT (the lifecycle rule expires those), kept once verified."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import httpx
import pytest
import yaml

from shared.media.storage import UPLOAD_TAG, S3Storage
from tests.conftest import EXAMPLES
from tests.test_storage_s3 import s3_endpoint  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tagged(s3_endpoint: str) -> S3Storage:  # noqa: F811  (the fixture imported above)
    """S3 storage that tags uploads, as it does on AWS (moto stands in for S3)."""
    storage = S3Storage("i2v-tagged", endpoint_url=s3_endpoint, region="us-east-1", tag_uploads=True)
    with contextlib.suppress(storage.client.exceptions.BucketAlreadyOwnedByYou):
        storage.client.create_bucket(Bucket="i2v-tagged")
    return storage


def tags(storage: S3Storage, key: str) -> dict[str, str]:
    """The object's tags."""
    found = storage.client.get_object_tagging(Bucket=storage.bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in found}


def test_upload_is_unverified_until_kept(tagged: S3Storage) -> None:
    """The presigned PUT carries the tag header; the object is tagged unverified, then verified by keep()."""
    data = (EXAMPLES / "square.jpg").read_bytes()
    key = f"uploads/u/{hashlib.sha256(data).hexdigest()}.jpg"
    target = tagged.upload_target(key, "image/jpeg", len(data), hashlib.sha256(data).hexdigest(), 300)
    assert target.headers["x-amz-tagging"] == f"{UPLOAD_TAG}=unverified"
    assert httpx.put(target.url, content=data, headers=target.headers).status_code == 200
    assert tags(tagged, key) == {UPLOAD_TAG: "unverified"}
    tagged.keep(key)
    assert tags(tagged, key) == {UPLOAD_TAG: "verified"}


def test_other_endpoints_are_not_tagged(s3_endpoint: str) -> None:  # noqa: F811  (the fixture imported above)
    """An S3-compatible endpoint (Supabase Storage, MinIO) gets no tag header: it may not support tags."""
    storage = S3Storage("i2v-plain", endpoint_url=s3_endpoint, region="us-east-1")
    assert (
        "x-amz-tagging"
        not in storage.upload_target("uploads/u/x.jpg", "image/jpeg", 10, "0" * 64, 60).headers
    )


def test_lifecycle_rule_expires_only_unverified_uploads() -> None:
    """serverless.yml's bucket expires objects under uploads/ tagged unverified, and no others."""
    bucket = yaml.safe_load((ROOT / "serverless.yml").read_text())["resources"]["Resources"]["MediaBucket"]
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    rule = rules["expire-abandoned-uploads"]
    assert rule["Prefix"] == "uploads/" and rule["TagFilters"] == [{"Key": UPLOAD_TAG, "Value": "unverified"}]
    assert set(rule) == {"Id", "Status", "Prefix", "TagFilters", "ExpirationInDays"}
