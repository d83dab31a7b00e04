"""The ``i2v`` command: run the local stack, manage the database and credits, and the demo."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from shared.db import Database

app = typer.Typer(
    help="i2v: image-to-video backend, local stack and tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
credits_app = typer.Typer(help="Credit commands (operator).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(credits_app, name="credits")
console = Console(stderr=True)


@contextmanager
def _database_unmigrated() -> Iterator[Database]:
    """The configured database (the embedded one when DATABASE_URL is unset), closed afterwards."""
    from shared import db as dbmod
    from shared.settings import get_settings

    settings = get_settings()
    url = settings.database_url
    embedded = None
    if not url:
        from infra.postgres import EmbeddedPostgres

        embedded = EmbeddedPostgres(settings.home / "pgdata")
        url = embedded.url
    database = dbmod.configure(url, max_size=1)
    try:
        yield database
    finally:
        database.close()
        if embedded is not None:
            embedded.stop()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run every function on one HTTP server (applies migrations; embedded Postgres unless DATABASE_URL)."""
    from infra.server import LocalStack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stack = LocalStack(host=host, port=port)
    console.print(f"i2v: serving http://{host}:{port}/functions/v1/ (Ctrl-C stops)")
    stack.serve()


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the SQL migrations in sql/ that are not applied yet, and sync the model catalog."""
    from shared.migrations import migrate, migration_files, sync_models

    with _database_unmigrated() as database:
        applied = migrate(database)
        count = sync_models(database)
    console.print(
        f"{len(applied)} applied, {len(migration_files()) - len(applied)} already applied; "
        f"{count} models synced"
    )
    for name in applied:
        typer.echo(name)


@app.command("dev-token")
def dev_token(
    user: Annotated[str, typer.Option(help="User id (UUID) for the token's sub.")],
    expires_in: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 3600,
) -> None:
    """Print an HS256 access token the running stack accepts (signed with SUPABASE_JWT_SECRET or the dev secret)."""
    from shared.auth import mint_dev_token

    try:
        user_id = uuid.UUID(user)
    except ValueError:
        console.print(f"[red]--user must be a UUID, got {user!r}[/red]")
        raise typer.Exit(2) from None
    typer.echo(mint_dev_token(user_id, expires_in=expires_in))


@credits_app.command("grant")
def credits_grant(
    user_id: Annotated[str, typer.Argument(help="User id (UUID).")],
    amount: Annotated[int, typer.Argument(help="Credits to add (negative to take back; never below zero).")],
    reason: Annotated[str, typer.Option(help="Why, recorded in the ledger.")] = "operator grant",
) -> None:
    """Add credits to a user's ledger and print the new balance."""
    from shared import errors
    from shared.credits import grant

    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        console.print(f"[red]USER_ID must be a UUID, got {user_id!r}[/red]")
        raise typer.Exit(2) from None
    from shared.migrations import migrate, sync_models

    try:
        with _database_unmigrated() as database:
            migrate(database)
            sync_models(database)
            balance = grant(uid, amount, reason)
    except errors.I2VError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    typer.echo(f"balance {balance}")


@app.command()
def demo(
    output_dir: Annotated[str, typer.Option(help="Where videos and thumbnails are saved.")] = "downloads",
    duration: Annotated[int, typer.Option(help="Seconds per video.", min=1, max=10)] = 3,
) -> None:
    """Start the local stack, make videos of the sample images through the HTTP API, download them."""
    from client.demo import run_demo

    sys.exit(run_demo(output_dir=output_dir, duration=duration))


def main() -> None:
    """Entry point."""
    app()
