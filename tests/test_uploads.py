"""create-upload-url: the per-user content cache, signed PUT targets and checks before use."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.conftest import EXAMPLES, Caller

IMAGE = (EXAMPLES / "square.jpg").read_bytes()
SHA = hashlib.sha256(IMAGE).hexdigest()


def _ask(caller: Caller, data: bytes = IMAGE, content_type: str = "image/jpeg") -> httpx.Response:
    body = {"content_type": content_type, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return caller.http.post("/functions/v1/create-upload-url", json=body)


def test_new_content_gets_a_put_target(caller: Caller) -> None:
    """Unknown content gets a signed PUT URL with headers, an image_url and an expiry."""
    body = _ask(caller).json()
    assert body["already_uploaded"] is False
    assert body["upload_method"] == "PUT" and body["upload_headers"] == {"Content-Type": "image/jpeg"}
    assert body["image_url"].endswith(f"/uploads/{caller.id}/{SHA}.jpg")
    assert "expires_at" in body


def test_known_content_is_not_uploaded_again(caller: Caller) -> None:
    """After the bytes were stored and used, the same hash answers already_uploaded with the same image_url."""
    caller.grant(5)
    url = caller.upload(data=IMAGE)
    assert (
        caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1}).status_code == 202
    )
    again = _ask(caller).json()
    assert again == {"image_url": url, "already_uploaded": True}


def test_upload_cache_is_per_user(caller: Caller, other: Caller) -> None:
    """Another user's upload of the same content does not count as this user's."""
    caller.grant(5)
    url = caller.upload(data=IMAGE)
    caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1})
    assert _ask(other).json()["already_uploaded"] is False


def test_put_with_wrong_size_or_type_or_signature_is_refused(caller: Caller) -> None:
    """The PUT target accepts exactly the declared size and type, and only with its signature."""
    target = _ask(caller).json()
    url = target["upload_url"]
    assert httpx.put(url, content=IMAGE[:-10], headers=target["upload_headers"]).status_code == 400
    assert httpx.put(url, content=IMAGE + b"xx", headers=target["upload_headers"]).status_code == 413
    assert httpx.put(url, content=IMAGE, headers={"Content-Type": "image/png"}).status_code == 403
    assert (
        httpx.put(url.replace("sig=", "sig=f"), content=IMAGE, headers=target["upload_headers"]).status_code
        == 403
    )
    assert httpx.put(url, content=IMAGE, headers=target["upload_headers"]).status_code == 200


def test_content_not_matching_its_hash_is_refused_before_charging(caller: Caller) -> None:
    """Bytes that differ from the declared sha256 are refused by the PUT; using the URL then is 400, free."""
    caller.grant(5)
    other_bytes = (EXAMPLES / "portrait.jpg").read_bytes()
    body = {"content_type": "image/jpeg", "size": len(other_bytes), "sha256": SHA}
    target = caller.http.post("/functions/v1/create-upload-url", json=body).json()
    put = httpx.put(target["upload_url"], content=other_bytes, headers=target["upload_headers"])
    assert put.status_code == 400 and "sha256" in put.json()["error"]["message"]
    resp = caller.generate(model_id="local-motion", image_url=target["image_url"], settings={"duration": 1})
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "image_url"
    assert caller.balance() == 5


def test_upload_never_completed_is_refused(caller: Caller) -> None:
    """Using an image_url whose bytes were never PUT answers 400."""
    caller.grant(5)
    url = _ask(caller).json()["image_url"]
    resp = caller.generate(model_id="local-motion", image_url=url, settings={"duration": 1})
    assert resp.status_code == 400 and resp.json()["error"]["details"]["field"] == "image_url"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content_type": "image/gif", "size": 10, "sha256": SHA}, "content_type"),
        ({"content_type": "image/jpeg", "size": 0, "sha256": SHA}, "size"),
        ({"content_type": "image/jpeg", "size": 10, "sha256": "abc"}, "sha256"),
        ({"content_type": "image/jpeg", "size": 10**9, "sha256": SHA}, "size"),
    ],
)
def test_bad_upload_requests_are_400(caller: Caller, body: dict[str, object], field: str) -> None:
    """Unsupported types, sizes and malformed hashes answer 400 naming the field."""
    resp = caller.http.post("/functions/v1/create-upload-url", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["details"]["field"] == field
