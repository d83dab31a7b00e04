"""Errors that tell the user what to do: why a token is refused, how to add credits, quiet expected 503s, and
a CLI that says at once when the server is not running."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from client.api import ApiUnreachable, I2VClient
from client.cli import app
from infra.server import free_port
from shared.auth import mint_dev_token
from shared.settings import Settings, get_settings
from tests.billing_support import stripe_settings
from tests.conftest import Caller, configured, token_claims
from tests.test_auth import serve_jwks

ROOT = Path(__file__).resolve().parent.parent
CREDITS = "/functions/v1/get-credits"


def _refusal(stack: str, token: str) -> dict[str, Any]:
    resp = httpx.get(f"{stack}{CREDITS}", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == "unauthorized"
    return err


# ------------------------------------------------------------------------------------------------------ 401


def test_401_says_why_the_token_is_refused(stack: str) -> None:
    """Expired, wrongly signed, wrong-audience and malformed tokens each get a 401 saying so, with
    details.reason, and no secret in the answer."""
    secret = get_settings().jwt_secret()
    now = int(time.time())
    cases = {
        "expired": jwt.encode(token_claims(exp=now - 120, iat=now - 800), secret, algorithm="HS256"),
        "signature": jwt.encode(
            token_claims(), "another-secret-that-is-at-least-32-bytes-long", algorithm="HS256"
        ),
        "audience": jwt.encode(token_claims(aud="anon"), secret, algorithm="HS256"),
        "missing_claim": jwt.encode(
            {k: v for k, v in token_claims().items() if k != "exp"}, secret, algorithm="HS256"
        ),
        "malformed": "not-a-jwt",
    }
    words = {
        "expired": "expired",
        "signature": "signature",
        "audience": "audience",
        "missing_claim": "'exp'",
        "malformed": "malformed",
    }
    for reason, token in cases.items():
        err = _refusal(stack, token)
        assert err["details"] == {"reason": reason}, err
        assert words[reason] in err["message"], err
        assert secret not in json.dumps(err)


def test_401_names_a_wrong_issuer(stack: str) -> None:
    """With SUPABASE_JWT_ISSUER set, a token from another issuer is refused naming the expected issuer."""
    token = jwt.encode(
        token_claims(iss="https://other.supabase.co/auth/v1"), get_settings().jwt_secret(), "HS256"
    )
    with configured(SUPABASE_JWT_ISSUER="https://mine.supabase.co/auth/v1"):
        err = _refusal(stack, token)
    assert err["details"]["reason"] == "issuer" and "https://mine.supabase.co/auth/v1" in err["message"]


def test_401_says_the_signing_key_is_unknown(stack: str) -> None:
    """An ES256 token whose kid is not in the JWKS is refused saying no signing key has that kid."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="known", use="sig")
    with serve_jwks({"keys": [jwk]}) as url, configured(SUPABASE_JWKS_URL=url):
        err = _refusal(
            stack, jwt.encode(token_claims(), key, algorithm="ES256", headers={"kid": "rotated-out"})
        )
    assert err["details"]["reason"] == "unknown_key" and "kid" in err["message"]


def test_dev_token_from_another_home_says_to_use_the_same_home(stack: str, tmp_path: Path) -> None:
    """A dev token minted under another I2V_HOME is refused telling the user to mint it with the server's
    I2V_HOME; a server with its own SUPABASE_JWT_SECRET gives no such hint."""
    elsewhere = Settings(i2v_home=tmp_path / "other-home")
    token = mint_dev_token(uuid.uuid4(), settings=elsewhere)
    err = _refusal(stack, token)
    assert err["details"]["reason"] == "signature"
    assert "I2V_HOME" in err["message"] and "i2v dev-token" in err["message"]
    assert elsewhere.jwt_secret() not in err["message"] and get_settings().jwt_secret() not in err["message"]
    with configured(SUPABASE_JWT_SECRET="a-configured-secret-of-at-least-32-bytes!"):
        err = _refusal(stack, token)
    assert err["details"]["reason"] == "signature" and "I2V_HOME" not in err["message"]


def test_dev_token_command_says_where_its_secret_lives(stack: str) -> None:
    """``i2v dev-token`` prints only the token on stdout and, on stderr, the dev secret's file and I2V_HOME."""
    result = CliRunner().invoke(app, ["dev-token", "--user", str(uuid.uuid4())])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token and jwt.get_unverified_header(token)["alg"] == "HS256"
    home = get_settings().home
    assert str(home / "dev-jwt-secret") in result.stderr and f"I2V_HOME={home}" in result.stderr


# ------------------------------------------------------------------------------------------------------ 402


def _short_of_credits(caller: Caller) -> dict[str, Any]:
    caller.grant(1)
    resp = caller.generate(
        model_id="local-motion", prompt="zoom", image_url=caller.upload(), settings={"duration": 4}
    )
    assert resp.status_code == 402, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert set(err["details"]) == {"balance", "cost"} and err["details"]["balance"] == 1
    return err


def test_402_without_stripe_says_how_the_operator_adds_credits(caller: Caller) -> None:
    """Without Stripe, a 402 gives the exact `i2v credits grant` command for the missing credits."""
    err = _short_of_credits(caller)
    missing = err["details"]["cost"] - err["details"]["balance"]
    assert f"i2v credits grant {caller.id} {missing}" in err["message"], err["message"]


def test_402_with_stripe_says_how_to_buy_credits(caller: Caller) -> None:
    """With Stripe configured, a 402 points at list-credit-packs and create-checkout-session."""
    with stripe_settings(stripe_secret_key="sk_test_guidance"):
        err = _short_of_credits(caller)
    assert "list-credit-packs" in err["message"] and "create-checkout-session" in err["message"]
    assert "i2v credits grant" not in err["message"]


# ------------------------------------------------------------------------------------------------------ 503


def test_unconfigured_feature_503_is_a_warning_without_traceback(
    caller: Caller, stack: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 503 because Stripe is not configured names the variable and is logged as a warning, never an error
    with a traceback."""
    with stripe_settings(), caplog.at_level(logging.INFO, logger="i2v.http"):
        checkout = caller.http.post("/functions/v1/create-checkout-session", json={"pack_id": "pack_500"})
        webhook = httpx.post(f"{stack}/functions/v1/stripe-webhook", content=b"{}")
    assert checkout.status_code == webhook.status_code == 503
    assert checkout.json()["error"]["details"] == {"setting": "STRIPE_SECRET_KEY"}
    assert webhook.json()["error"]["details"] == {"setting": "STRIPE_WEBHOOK_SECRET"}
    records = [r for r in caplog.records if r.name == "i2v.http"]
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert [getattr(r, "setting", None) for r in warnings] == ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]


# ------------------------------------------------------------------------------------------- CLI, server down


def test_cli_with_the_server_down_retries_once_and_says_what_to_check() -> None:
    """Against a closed port the CLI makes two attempts (one retry line), then says it cannot reach the URL and
    asks whether `i2v serve` is running; no stamina log records."""
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "I2V_TOKEN": "x", "I2V_API_URL": url, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "client", "credits"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len([line for line in lines if line.startswith("retrying in")]) == 1, done.stderr
    assert f"cannot reach {url} \N{EM DASH} is `i2v serve` running?" in done.stderr
    assert "stamina" not in done.stderr and len(lines) == 2


def test_client_tries_a_refused_connection_twice() -> None:
    """The client library makes exactly two attempts at a refused connection before ApiUnreachable."""
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    client = I2VClient("http://127.0.0.1:8000", "token", transport=httpx.MockTransport(refuse))
    with pytest.raises(ApiUnreachable, match="is `i2v serve` running"):
        client.credits()
    assert len(attempts) == 2
