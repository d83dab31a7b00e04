"""Uploads that cannot be swapped: bytes checked on receipt, written once, verified records immutable."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from shared import errors
from shared.db import Database
from shared.media.storage import LocalStorage, get_storage
from tests.conftest import EXAMPLES, Caller, raw_http, wait_for

IMAGE = (EXAMPLES / "square.jpg").read_bytes()
SHA = hashlib.sha256(IMAGE).hexdigest()


def ask(
    caller: Caller, data: bytes = IMAGE, content_type: str = "image/jpeg", sha: str | None = None
) -> dict:
    """create-upload-url for these bytes (or for another declared hash)."""
    body = {
        "content_type": content_type,
        "size": len(data),
        "sha256": sha or hashlib.sha256(data).hexdigest(),
    }
    resp = caller.http.post("/functions/v1/create-upload-url", json=body)
    assert resp.status_code == 200, resp.text
    answer: dict = resp.json()
    return answer


def same_size_other_bytes(data: bytes) -> bytes:
    """Other bytes of exactly ``len(data)``, still starting like the same JPEG (a block in the middle reversed)."""
    return data[:1000] + data[1000:5000][::-1] + data[5000:]


def stored_path(url: str) -> Path:
    """The local file behind an image_url."""
    storage = get_storage()
    assert isinstance(storage, LocalStorage)
    key = storage.key_for_url(url)
    assert key is not None
    return storage.path(key)


def test_replayed_put_url_cannot_change_the_stored_bytes(caller: Caller) -> None:
    """A signed PUT URL writes once: replaying it, with other bytes of the same size or the same bytes, is 409."""
    target = ask(caller)
    url, headers = target["upload_url"], target["upload_headers"]
    assert httpx.put(url, content=IMAGE, headers=headers).status_code == 200
    swapped = same_size_other_bytes(IMAGE)
    replay = httpx.put(url, content=swapped, headers=headers)
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "upload_already_stored"
    assert httpx.put(url, content=IMAGE, headers=headers).status_code == 409
    assert stored_path(target["image_url"]).read_bytes() == IMAGE


def test_bytes_not_matching_the_declared_hash_are_refused_on_receipt(caller: Caller) -> None:
    """A PUT whose bytes hash to something else is 400 naming sha256, and nothing becomes visible."""
    swapped = same_size_other_bytes(IMAGE)
    target = ask(caller, sha=SHA)
    resp = httpx.put(target["upload_url"], content=swapped, headers=target["upload_headers"])
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "sha256"
    assert not stored_path(target["image_url"]).exists()
    assert ask(caller)["already_uploaded"] is False
    again = httpx.put(target["upload_url"], content=IMAGE, headers=target["upload_headers"])
    assert again.status_code == 200, "a refused attempt does not use up the URL"


def test_declared_type_must_match_the_bytes_on_receipt(caller: Caller) -> None:
    """A JPEG declared as PNG is refused by the PUT itself (400 naming content_type); nothing is stored."""
    target = ask(caller, content_type="image/png")
    resp = httpx.put(target["upload_url"], content=IMAGE, headers=target["upload_headers"])
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "content_type"
    assert "image/jpeg" in resp.json()["error"]["message"]
    assert not stored_path(target["image_url"]).exists()


def test_after_a_put_the_same_content_is_already_uploaded(caller: Caller) -> None:
    """Once the PUT succeeded, create-upload-url answers the stored copy (no job needed first)."""
    target = ask(caller)
    assert httpx.put(target["upload_url"], content=IMAGE, headers=target["upload_headers"]).status_code == 200
    assert ask(caller) == {"image_url": target["image_url"], "already_uploaded": True}


def test_verified_upload_record_never_changes(caller: Caller, db: Database) -> None:
    """A verified record keeps its size, type and key; a direct update of them is refused by the database."""
    caller.upload(data=IMAGE)
    record = db.call(
        "begin_upload",
        user=caller.id,
        sha256=SHA,
        content_type="image/png",
        size=10,
        key="uploads/elsewhere.png",
        signup_credits=0,
    )
    assert (record["size"], record["content_type"]) == (len(IMAGE), "image/jpeg")
    with pytest.raises(errors.InvalidTransition), db.transaction() as tx:
        tx.query("update uploads set size = 10 where user_id = %s and sha256 = %s", (caller.id, SHA))


def test_swapped_file_behind_our_back_is_not_rendered(caller: Caller) -> None:
    """Bytes changed in storage after verification fail the job (refunded) instead of being used."""
    caller.grant(5)
    data = (EXAMPLES / "landscape.jpg").read_bytes()
    url = caller.upload(data=data)
    stored_path(url).write_bytes(data[::-1])
    created = caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1})
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    job = wait_for(
        lambda: (j := caller.status(job_id).json())["status"] in ("failed", "completed") and j,
        "the job to finish",
    )
    assert job["status"] == "failed" and "content hash" in job["error_message"]
    assert caller.balance() == 5


def test_provider_cdn_cache_is_consulted_only_for_the_callers_verified_content(
    caller: Caller, other: Caller, db: Database
) -> None:
    """A cached provider copy of some content is returned only to a user who stored and verified that content."""
    caller.upload(data=IMAGE)
    db.call("put_provider_upload", provider="test-cdn", sha256=SHA, url="https://cdn.example/x.jpg")
    assert db.call("get_provider_upload", provider="test-cdn", user=caller.id, sha256=SHA)
    ask(other, sha=SHA)  # declared, never stored: pending
    assert db.call("get_provider_upload", provider="test-cdn", user=other.id, sha256=SHA) is None


def test_unsigned_huge_put_is_refused_before_its_body_is_read(caller: Caller, stack: str) -> None:
    """An unsigned PUT declaring 1 GiB is answered 403 from its headers alone; the body is never sent."""
    key = f"uploads/{caller.id}/{SHA}.jpg"
    head = (
        f"PUT /storage/v1/upload/{key}?exp=9999999999&size=1073741824&sig=00 HTTP/1.1\r\n"
        f"Host: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1073741824\r\n\r\n"
    ).encode()
    status, _, body = raw_http(stack, head)
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"


def test_signed_put_over_its_size_is_refused_as_it_arrives(caller: Caller, stack: str) -> None:
    """A chunked body to a 10-byte upload URL is refused with 413 once it passes 10 bytes; nothing is kept."""
    data = b"0123456789"
    target = ask(caller, data=data)
    url = urlsplit(target["upload_url"])
    head = (
        f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        f"Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"x" * 65536
    status, _, _ = raw_http(stack, head, f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    assert status == 413
    storage = get_storage()
    assert isinstance(storage, LocalStorage)
    assert not stored_path(target["image_url"]).exists()
    assert list((storage.root / ".incoming").glob("*.part")) == []


def test_declared_length_over_the_url_size_is_refused_before_reading(caller: Caller, stack: str) -> None:
    """A signed PUT whose Content-Length exceeds the URL's size is 413 from the headers alone."""
    target = ask(caller)
    url = urlsplit(target["upload_url"])
    head = (
        f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {10**9}\r\n\r\n"
    ).encode()
    assert raw_http(stack, head)[0] == 413


@pytest.mark.parametrize(
    "path", ["/functions/v1/quote", "/functions/v1/stripe-webhook", "/functions/v1/fal-webhook"]
)
def test_function_bodies_over_the_route_limit_are_refused_before_reading(stack: str, path: str) -> None:
    """Any function declaring a 1 GiB body gets 413 from its headers alone, before authentication or reading."""
    head = (
        f"POST {path}?job_id={uuid.uuid4()} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1073741824\r\n\r\n"
    ).encode()
    status, _, body = raw_http(stack, head)
    assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large"


def test_chunked_function_body_is_cut_off_at_the_route_limit(stack: str) -> None:
    """A chunked body with no length is refused with 413 once it passes the route's limit (64 KiB for quote)."""
    head = (
        b"POST /functions/v1/quote HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * (128 * 1024)
    assert raw_http(stack, head, f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")[0] == 413
