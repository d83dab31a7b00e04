"""API keys: shown once, stored as digests, act as their owner within their scopes, refused once revoked."""

from __future__ import annotations

import hashlib
import re

from shared.db import Database
from tests.conftest import Caller, configured
from tests.teams_support import generate, key_client, new_key, video_body


def test_a_key_is_shown_once_and_stored_as_its_digest(caller: Caller, db: Database) -> None:
    """create-api-key answers the key once; lists show its prefix only; the database holds its SHA-256 only."""
    created = caller.http.post(
        "/functions/v1/create-api-key", json={"name": "ci", "scopes": ["read", "generate"]}
    ).json()
    assert re.fullmatch(r"i2v_sk_[0-9A-Za-z]{43}", created["key"])
    assert created["prefix"] == created["key"][:15] and created["scopes"] == ["generate", "read"]
    listed = caller.http.get("/functions/v1/list-api-keys").json()["keys"]
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    with db.transaction() as tx:
        rows = tx.query("select digest from api_keys where id = %s", (created["id"],))
        texts = tx.query("select count(*) from api_keys where %s in (name, prefix)", (created["key"],))
    assert bytes(rows[0][0]) == hashlib.sha256(created["key"].encode()).digest()
    assert texts == [(0,)]


def test_a_key_acts_as_its_owner_by_bearer_or_x_api_key(caller: Caller) -> None:
    """A key in Authorization: Bearer or X-API-Key generates and reads as its owner and records its last use."""
    caller.grant(5)
    key = new_key(caller)
    body = video_body(caller)
    with key_client(caller, key) as bearer, key_client(caller, key, "x-api-key") as header:
        created = generate(bearer, body)
        assert created.status_code == 202, created.text
        job_id = created.json()["job_id"]
        assert header.get("/functions/v1/get-video-status", params={"job_id": job_id}).status_code == 200
        assert caller.status(job_id).status_code == 200  # the owner sees the key's job
    listed = caller.http.get("/functions/v1/list-api-keys").json()["keys"]
    assert listed[0]["last_used_at"] is not None
    assert caller.balance() == 4


def test_a_key_is_refused_what_its_scopes_do_not_allow(caller: Caller) -> None:
    """A read-only key gets 403 insufficient_scope on generate-video and create-api-key, and may still read."""
    caller.grant(5)
    key = new_key(caller, scopes=["read"])
    with key_client(caller, key) as http:
        refused = generate(http, video_body(caller))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
        assert refused.json()["error"]["details"]["scope"] == "generate"
        keys = http.post("/functions/v1/create-api-key", json={"name": "escalate"})
        assert keys.status_code == 403 and keys.json()["error"]["details"]["scope"] == "keys"
        assert http.get("/functions/v1/list-videos").status_code == 200
    assert caller.balance() == 5


def test_a_key_scoped_to_keys_creates_keys_within_its_own_scopes(caller: Caller) -> None:
    """A key with the keys scope may create keys, but none with a scope it lacks itself."""
    key = new_key(caller, scopes=["keys", "read"])
    with key_client(caller, key) as http:
        ok = http.post("/functions/v1/create-api-key", json={"name": "child", "scopes": ["read"]})
        assert ok.status_code == 201, ok.text
        wider = http.post("/functions/v1/create-api-key", json={"name": "child", "scopes": ["billing"]})
        assert wider.status_code == 403 and wider.json()["error"]["code"] == "insufficient_scope"


def test_a_revoked_key_is_refused_at_once_by_billed_requests(caller: Caller, db: Database) -> None:
    """Revoked behind this container's back, a key it remembers is still refused (401) by generate-video at once
    (its procedure call checks the key) and by reads once API_KEY_RECHECK_S has passed; nothing is charged."""
    caller.grant(5)
    key = new_key(caller)
    key_id = caller.http.get("/functions/v1/list-api-keys").json()["keys"][0]["id"]
    body = video_body(caller)
    with key_client(caller, key) as http:
        assert generate(http, body).status_code == 202  # remembered by this container from here on
        db.call("revoke_api_key", user=caller.id, key=key_id)  # as another container would
        refused = generate(http, body)
        assert refused.status_code == 401 and refused.json()["error"]["details"]["reason"] == "api_key"
        with configured(API_KEY_RECHECK_S="0"):
            assert http.get("/functions/v1/list-videos").status_code == 401
    assert caller.balance() == 4


def test_revoke_api_key_refuses_the_key_everywhere_at_once(caller: Caller) -> None:
    """revoke-api-key marks the key revoked and every endpoint of this container answers 401 at once."""
    key = new_key(caller)
    key_id = caller.http.get("/functions/v1/list-api-keys").json()["keys"][0]["id"]
    with key_client(caller, key) as http:
        assert http.get("/functions/v1/list-videos").status_code == 200
        revoked = caller.http.post("/functions/v1/revoke-api-key", json={"key_id": key_id})
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert http.get("/functions/v1/list-videos").status_code == 401


def test_an_expired_or_unknown_key_is_refused(caller: Caller, db: Database) -> None:
    """A key past its expires_at, and a well-formed key nobody was given, answer 401; a key cannot be created
    already expired (400 naming expires_at), and one given without a zone expires at that UTC time."""
    refused = caller.http.post(
        "/functions/v1/create-api-key", json={"name": "late", "expires_at": "2000-01-01T00:00:00Z"}
    )
    assert refused.status_code == 400 and refused.json()["error"]["details"]["field"] == "expires_at"
    made = caller.http.post(
        "/functions/v1/create-api-key", json={"name": "soon", "expires_at": "2999-01-01T00:00:00"}
    ).json()
    assert made["expires_at"] == "2999-01-01T00:00:00Z"
    with db.transaction() as tx:  # its time comes
        tx.query("update api_keys set expires_at = now() - interval '1 second' where id = %s", (made["id"],))
    with key_client(caller, made["key"]) as http:
        assert http.get("/functions/v1/list-videos").status_code == 401
    with key_client(caller, "i2v_sk_" + "A" * 43) as http:
        assert http.get("/functions/v1/list-videos").status_code == 401


def test_another_users_key_cannot_be_revoked(caller: Caller, other: Caller) -> None:
    """revoke-api-key of someone else's key answers 404 and the key keeps working."""
    key = new_key(caller)
    key_id = caller.http.get("/functions/v1/list-api-keys").json()["keys"][0]["id"]
    assert other.http.post("/functions/v1/revoke-api-key", json={"key_id": key_id}).status_code == 404
    with key_client(caller, key) as http:
        assert http.get("/functions/v1/list-videos").status_code == 200
