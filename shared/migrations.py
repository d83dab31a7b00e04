"""Apply the numbered SQL files in ``sql/`` in order, each once, each in its own transaction."""

from __future__ import annotations

import re
from pathlib import Path

from shared.db import Database
from shared.errors import I2VError

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x1272_0001  # one advisory lock id: concurrent migrators take turns

_BOOTSTRAP = """
create table if not exists schema_migrations (
  version    text primary key,
  name       text not null,
  applied_at timestamptz not null default now()
)
"""


def migration_files(directory: Path = SQL_DIR) -> list[Path]:
    """The migration files, in the order they apply; refuses a name that is not ``NNNN_name.sql``."""
    files = sorted(p for p in directory.glob("*.sql"))
    for path in files:
        if not _NAME.match(path.name):
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
    versions = [p.name[:4] for p in files]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a number")
    return files


class MigrationError(RuntimeError):
    """A migration file failed; nothing of it was applied."""


def migrate(db: Database, directory: Path = SQL_DIR) -> list[str]:
    """Apply every migration not yet recorded in ``schema_migrations``; return the names applied."""
    applied: list[str] = []
    for path in migration_files(directory):
        try:
            if _apply(db, path):
                applied.append(path.name)
        except I2VError as exc:
            raise MigrationError(f"{path.name}: {exc.__cause__ or exc}") from exc
    return applied


def _apply(db: Database, path: Path) -> bool:
    with db.transaction() as tx:
        tx.query("select pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        tx.script(_BOOTSTRAP)
        version = path.name[:4]
        if tx.query("select 1 from schema_migrations where version = %s", (version,)):
            return False
        tx.script(path.read_text())
        tx.query("insert into schema_migrations (version, name) values (%s, %s)", (version, path.name))
        return True


def sync_models(db: Database) -> int:
    """Write the code's model catalog into the ``models`` table; return how many rows."""
    from shared.providers.catalog import all_models

    specs = list(all_models().values())
    for spec in specs:
        db.call(
            "upsert_model",
            id=spec.id,
            slug=spec.slug,
            name=spec.name,
            provider=spec.provider,
            endpoint=spec.endpoint,
            available=spec.available,
            reason=spec.unavailable_reason,
            requires_image=spec.requires_image,
            capabilities=spec.capabilities(),
            price=spec.price.model_dump(),
        )
    return len(specs)
