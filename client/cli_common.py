"""What every API command of ``i2v`` shares: the --api-url, --token and --json options, the consoles, and the API
session that explains an API error and exits 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from client.api import I2VClient

console = Console(stderr=True)  # progress, notes and errors
out = Console()  # results

# API client commands: each talks to the HTTP API (I2V_API_URL, I2V_TOKEN), never to the database.

DEFAULT_API_URL = "http://127.0.0.1:8000"
ApiUrl = Annotated[str, typer.Option("--api-url", envvar="I2V_API_URL", help="Base URL of the i2v API.")]
Token = Annotated[
    str | None, typer.Option("--token", envvar="I2V_TOKEN", help="Access token (Bearer).", show_default=False)
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


@contextmanager
def api_session(api_url: str, token: str | None, *, need_token: bool = True) -> Iterator[I2VClient]:
    """A client of the API; an API error is explained and ends the command with exit code 1."""
    from client import render
    from client.api import ApiError, I2VClient

    if need_token and not token:
        console.print("[red]Set I2V_TOKEN or pass --token (local stack: i2v dev-token --user UUID).[/red]")
        raise typer.Exit(2)
    try:
        with retry_notes(), I2VClient(api_url, token) as api:
            yield api
    except ApiError as exc:
        render.api_error(console, exc)
        raise typer.Exit(1) from None


@contextmanager
def retry_notes() -> Iterator[None]:
    """While an API command runs, each retry the client schedules is one short line on stderr (instead of
    stamina's log records); the previous retry hooks are restored afterwards."""
    import stamina.instrumentation

    from client.api import ApiError

    def note(details: stamina.instrumentation.RetryDetails) -> None:
        cause = details.caused_by
        why = (
            f"{cause.code}: {cause.message}"
            if isinstance(cause, ApiError)
            else f"{type(cause).__name__}: {cause}"
        )
        console.print(
            f"[dim]retrying in {details.wait_for:.1f} s ({why})[/dim]", highlight=False, soft_wrap=True
        )

    previous = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([note])
    try:
        yield
    finally:
        stamina.instrumentation.set_on_retry_hooks(previous)
