"""Apply the SQL in ``sql/``: the numbered migrations once each, then every procedure file on every run.

Tables live in the numbered migrations (``sql/NNNN_name.sql``): each is applied once, in order, in its own
transaction, and what a released one does to tables never changes. Functions and triggers live in ``sql/procedures/*.sql``, one
definition per function across those files, re-applied after the migrations on every run (all of them in one
transaction, in file name order), so the live definition of a procedure is always the one in its file. The rules
of ``sql/procedures/``:

* functions are written ``create or replace function``; a name is defined once (no overloads);
* a change of a function's argument types or return type, or its removal, needs a numbered migration that drops
  the old one (``drop function if exists name(old argument types)``): ``create or replace`` cannot change them;
* a trigger is created right after its function, only when missing, so that re-applying the files takes no table
  lock that would wait for a writer; a numbered migration that changes a trigger drops it, and the procedure
  file creates the new one;
* a numbered migration must not call these functions: on a fresh database they do not exist yet while it runs;
* a limit Python enforces too is written ``{{NAME}}`` and filled in from ``shared.limits`` (defined once).

Every step takes the same transaction-scoped advisory lock, so concurrent migrators take turns, and holds no
session state, so it works through a transaction-mode pooler; each file is sent as one simple-protocol message.
"""

from __future__ import annotations

import re
from pathlib import Path

from shared import limits
from shared.db import Database
from shared.errors import I2VError

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
PROCEDURES = "procedures"  # the subdirectory of the SQL directory holding the procedure files
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_CONSTANT = re.compile(r"\{\{([A-Z_]+)\}\}")
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


def procedure_files(directory: Path = SQL_DIR) -> list[Path]:
    """The procedure files, in the order they apply (none when ``directory`` has no ``procedures/``)."""
    return sorted((directory / PROCEDURES).glob("*.sql"))


class MigrationError(RuntimeError):
    """A migration or procedure file failed; nothing of it was applied."""


def render_procedures(text: str) -> str:
    """A procedure file with each ``{{NAME}}`` replaced by its value in ``shared.limits``."""
    constants = limits.sql_constants()

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in constants:
            raise MigrationError(f"{{{{{name}}}}} is not a constant of shared.limits")
        return str(constants[name])

    return _CONSTANT.sub(value, text)


def migrate(db: Database, directory: Path = SQL_DIR) -> list[str]:
    """Apply every migration not yet recorded in ``schema_migrations``, then re-apply every procedure file.

    Returns the names of the migrations applied (the procedure files are applied on every run).
    """
    applied: list[str] = []
    done = _applied_versions(db)
    for path in migration_files(directory):
        if path.name[:4] in done:
            continue
        try:
            if _apply(db, path):
                applied.append(path.name)
        except I2VError as exc:
            raise MigrationError(f"{path.name}: {exc.__cause__ or exc}") from exc
    procedures = procedure_files(directory)
    if procedures:
        _apply_procedures(db, procedures)
    return applied


def _applied_versions(db: Database) -> set[str]:
    with db.transaction() as tx:
        tx.query("select pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        tx.script(_BOOTSTRAP)
        return {row[0] for row in tx.query("select version from schema_migrations")}


def _apply(db: Database, path: Path) -> bool:
    with db.transaction() as tx:
        tx.query("select pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        tx.script(_BOOTSTRAP)
        version = path.name[:4]
        if tx.query("select 1 from schema_migrations where version = %s", (version,)):
            return False  # another migrator applied it since the versions were read
        tx.script(path.read_text())
        tx.query("insert into schema_migrations (version, name) values (%s, %s)", (version, path.name))
        return True


def _apply_procedures(db: Database, files: list[Path]) -> None:
    current = files[0]
    try:
        with db.transaction() as tx:
            tx.query("select pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            for current in files:
                tx.script(render_procedures(current.read_text()))
    except I2VError as exc:
        raise MigrationError(f"{PROCEDURES}/{current.name}: {exc.__cause__ or exc}") from exc


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
            provider=spec.routes[0].provider,
            endpoint=spec.routes[0].endpoint,
            available=spec.available,
            reason=spec.unavailable_reason,
            requires_image=spec.requires_image,
            capabilities=spec.capabilities(),
            price=spec.routes[0].price.model_dump(),
        )
    return len(specs)
