"""Operator commands of ``i2v``: run the local stack, migrate the database, reconcile hosted jobs, mint a dev token,
grant credits. They act on the infrastructure directly (the database, the local server), not through the HTTP
API; ``client/cli.py`` mounts them on the ``i2v`` command."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from shared.db import Database

console = Console(stderr=True)


def register(app: typer.Typer, db_app: typer.Typer, credits_app: typer.Typer) -> None:
    """Mount the operator commands on the ``i2v`` command and its ``db`` and ``credits`` groups."""
    app.command()(serve)
    db_app.command("migrate")(db_migrate)
    app.command()(reconcile)
    app.command("dev-token")(dev_token)
    credits_app.command("grant")(credits_grant)


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


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="HTTP worker processes sharing the port (the local engine runs in one of them)."
        ),
    ] = 1,
) -> None:
    """Run every function on one HTTP server (applies migrations; embedded Postgres unless DATABASE_URL).

    SIGINT (Ctrl-C) or SIGTERM stops it cleanly: requests in flight finish, the workers stop, then Postgres.
    """
    from infra.server import LocalStack

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stack = LocalStack(host=host, port=port, workers=workers)
    console.print(f"i2v: serving http://{host}:{port}/functions/v1/ (Ctrl-C stops)")
    stack.serve()


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


def reconcile() -> None:
    """Run one reconciliation pass over hosted jobs (lost webhooks, crashed submissions, unfinished mirroring)."""
    from shared.jobs import reconcile

    with _database_unmigrated():
        counts = reconcile.reconcile_once()
    typer.echo(" ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to do")


def dev_token(
    user: Annotated[str, typer.Option(help="User id (UUID) for the token's sub.")],
    expires_in: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 3600,
    operator: Annotated[
        bool, typer.Option(help="Grant the operator role (app_metadata.roles): the operator overview.")
    ] = False,
) -> None:
    """Print an HS256 access token the running stack accepts (signed with SUPABASE_JWT_SECRET or the dev secret).

    Where the secret lives is said on stderr: a server accepts the token only when it uses the same secret.
    """
    from shared.auth import mint_dev_token
    from shared.settings import get_settings

    try:
        user_id = uuid.UUID(user)
    except ValueError:
        console.print(f"[red]--user must be a UUID, got {user!r}[/red]")
        raise typer.Exit(2) from None
    settings = get_settings()
    roles = ("operator",) if operator else ()
    token = mint_dev_token(user_id, expires_in=expires_in, settings=settings, roles=roles)
    if settings.supabase_jwt_secret:
        console.print("signed with SUPABASE_JWT_SECRET", highlight=False)
    else:
        console.print(
            f"signed with the dev secret in {settings.home / 'dev-jwt-secret'}: "
            f"servers started with I2V_HOME={settings.home} accept it",
            highlight=False,
            soft_wrap=True,
        )
    typer.echo(token)


def credits_grant(
    user_id: Annotated[str, typer.Argument(help="User id (UUID).")],
    amount: Annotated[int, typer.Argument(help="Credits to add (negative to take back; never below zero).")],
    reason: Annotated[str, typer.Option(help="Why, recorded in the ledger.")] = "operator grant",
) -> None:
    """Add credits to a user's ledger and print the new balance."""
    from shared import errors
    from shared.billing.ledger import grant

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
