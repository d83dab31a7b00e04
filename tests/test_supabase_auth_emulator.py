"""The Supabase Auth emulator speaks the wire format the console's supabase-js expects, and its tokens are the ones
the API accepts from a Supabase project (ES256 from the project's key set, the reference's claims)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jwt
import pytest

from shared.billing import ledger as credits
from tests.conftest import Caller, configured
from tests.emulators.supabase_auth import SupabaseAuthEmulator

PASSWORD = "correct horse battery"


@pytest.fixture
def auth() -> Iterator[SupabaseAuthEmulator]:
    """A running emulator with no users."""
    with SupabaseAuthEmulator() as emulator:
        yield emulator


def _client(auth: SupabaseAuthEmulator) -> httpx.Client:
    return httpx.Client(base_url=auth.issuer, headers={"apikey": auth.anon_key}, timeout=10)


def _sign_in(http: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return http.post("/token", params={"grant_type": "password"}, json={"email": email, "password": password})


def test_password_grant_issues_a_session_with_the_references_claims(auth: SupabaseAuthEmulator) -> None:
    """A password grant answers access token, bearer type, expiry, refresh token and user; the access token is
    ES256 under the published key, with the claims of a Supabase user token."""
    user = auth.add_user("Ada@Example.com", PASSWORD)
    with _client(auth) as http:
        session = _sign_in(http, "ada@example.com").json()
    assert {"access_token", "token_type", "expires_in", "refresh_token", "user"} <= set(session)
    assert session["token_type"] == "bearer" and session["expires_in"] == 3600
    assert session["user"]["id"] == str(user) and session["user"]["email"] == "ada@example.com"
    key = jwt.PyJWKClient(auth.jwks_url).get_signing_key_from_jwt(session["access_token"])
    assert jwt.get_unverified_header(session["access_token"])["alg"] == "ES256"
    claims = jwt.decode(
        session["access_token"], key.key, algorithms=["ES256"], audience="authenticated", issuer=auth.issuer
    )
    assert claims["sub"] == str(user) and claims["role"] == "authenticated" and claims["aal"] == "aal1"
    assert claims["is_anonymous"] is False and claims["exp"] - claims["iat"] == 3600 and claims["session_id"]


@pytest.mark.parametrize(
    ("email", "password"), [("ada@example.com", "wrong"), ("nobody@example.com", PASSWORD)]
)
def test_wrong_credentials_are_an_invalid_grant(
    auth: SupabaseAuthEmulator, email: str, password: str
) -> None:
    """A wrong password and an unknown email get the same 400 invalid_grant, "Invalid login credentials"."""
    auth.add_user("ada@example.com", PASSWORD)
    with _client(auth) as http:
        refused = _sign_in(http, email, password)
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant", "error_description": "Invalid login credentials"}


def test_a_refresh_token_works_once_and_logout_ends_the_session(auth: SupabaseAuthEmulator) -> None:
    """A refresh token gives a new session once; after logout the session's newest refresh token is refused."""
    auth.add_user("ada@example.com", PASSWORD)
    with _client(auth) as http:
        first = _sign_in(http, "ada@example.com").json()
        refresh = {"grant_type": "refresh_token"}
        second = http.post("/token", params=refresh, json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
        reused = http.post("/token", params=refresh, json={"refresh_token": first["refresh_token"]})
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        bearer = {"Authorization": f"Bearer {second.json()['access_token']}"}
        me = http.get("/user", headers=bearer)
        assert me.status_code == 200 and me.json()["email"] == "ada@example.com"
        assert http.post("/logout", params={"scope": "global"}, headers=bearer).status_code == 204
        after = http.post("/token", params=refresh, json={"refresh_token": second.json()["refresh_token"]})
        assert after.status_code == 400
    assert auth.grants("password") == 1 and auth.grants("refresh_token") == 3


def test_the_api_key_is_required_and_browsers_may_call_it(auth: SupabaseAuthEmulator) -> None:
    """Without the apikey header a sign-in is 401; a cross-origin preflight for it is allowed."""
    auth.add_user("ada@example.com", PASSWORD)
    with httpx.Client(base_url=auth.issuer, timeout=10) as http:
        assert _sign_in(http, "ada@example.com").status_code == 401
        preflight = http.options(
            "/token?grant_type=password",
            headers={
                "Origin": "http://127.0.0.1:8000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "apikey,authorization,content-type,x-client-info",
            },
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", "http://127.0.0.1:8000")
    assert "apikey" in preflight.headers["access-control-allow-headers"].lower()


def test_the_api_accepts_its_tokens_as_a_supabase_projects(
    auth: SupabaseAuthEmulator, caller: Caller
) -> None:
    """Configured with the project's URL, key set and issuer, the API reads the signed-in user's credits with
    the access token, and refuses it once the issuer is another project's."""
    user = auth.add_user("ada@example.com", PASSWORD)
    credits.grant(user, 3, "test grant")
    with _client(auth) as http:
        token = _sign_in(http, "ada@example.com").json()["access_token"]
    project = {
        "SUPABASE_URL": auth.base_url,
        "SUPABASE_JWKS_URL": auth.jwks_url,
        "SUPABASE_JWT_ISSUER": auth.issuer,
    }
    bearer = {"Authorization": f"Bearer {token}"}
    with configured(**project):
        me = caller.http.get("/functions/v1/get-credits", headers=bearer)
    assert me.status_code == 200 and me.json()["balance"] == 3, me.text
    with configured(**{**project, "SUPABASE_JWT_ISSUER": "https://abcdefghijklmnopqrst.supabase.co/auth/v1"}):
        other = caller.http.get("/functions/v1/get-credits", headers=bearer)
    assert other.status_code == 401 and other.json()["error"]["details"]["reason"] == "issuer"
