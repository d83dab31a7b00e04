"""The web console on the local server: its static files at ``/``, its ``config.json``, and the dev sign-in.

The console (``console/``) is a client of the public HTTP API like any other; deployed, it is plain static files
on any host, with a ``config.json`` written next to them (docs/deploy.md). Here the local server serves the
files and answers ``/config.json`` from the settings.

``POST /console/dev-sign-in`` exists only on the local server, and answers only while the stack signs tokens with
its own dev secret (no ``SUPABASE_JWT_SECRET`` or ``SUPABASE_JWKS_URL``), and only to a client on this machine
(a loopback address): it mints the same token ``i2v dev-token`` prints. No Lambda deploys it.
"""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from shared import errors
from shared.settings import get_settings

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
#: How long a dev sign-in lasts.
DEV_TOKEN_TTL_S = 8 * 3600


def console_config() -> dict[str, Any]:
    """What the console reads at start: where the API is and how to sign in."""
    settings = get_settings()
    config: dict[str, Any] = {"api_url": "", "dev_sign_in": settings.uses_dev_secret()}
    if settings.supabase_url and settings.supabase_anon_key:
        config.update(supabase_url=settings.supabase_url, supabase_anon_key=settings.supabase_anon_key)
    return config


def _from_this_machine(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_router() -> APIRouter:
    """``GET /config.json`` and ``POST /console/dev-sign-in``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/config.json")
    def config() -> JSONResponse:
        return JSONResponse(console_config(), headers={"Cache-Control": "no-store"})

    @router.post("/console/dev-sign-in")
    async def dev_sign_in(request: Request) -> JSONResponse:
        from shared.auth import mint_dev_token

        settings = get_settings()
        if not settings.uses_dev_secret():
            raise errors.NotFound("The dev sign-in exists only while the stack uses its own dev secret.")
        if not _from_this_machine(request):
            raise errors.Forbidden("The dev sign-in answers only on this machine (a loopback address).")
        try:
            body = await request.json()
            user_id = uuid.UUID(str(body.get("user_id") or uuid.uuid4()))
        except (ValueError, AttributeError) as exc:
            raise errors.InvalidField("user_id", "user_id must be a UUID.") from exc
        token = mint_dev_token(user_id, expires_in=DEV_TOKEN_TTL_S, settings=settings)
        answer = {"access_token": token, "user_id": str(user_id), "expires_in": DEV_TOKEN_TTL_S}
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    return router


class ConsoleFiles(StaticFiles):
    """The console's static files (``/`` is index.html), revalidated on every load so an edit shows at once."""

    def file_response(
        self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200
    ) -> Response:
        """The file, with ``Cache-Control: no-cache`` and ``X-Content-Type-Options: nosniff``."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def console_files() -> ConsoleFiles | None:
    """The static-files app for ``console/``, or None when this installation has no console directory."""
    return ConsoleFiles(directory=CONSOLE_DIR, html=True) if CONSOLE_DIR.is_dir() else None
