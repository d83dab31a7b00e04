"""Migrations: numbered files applied once, in order, each in a transaction; the catalog synced."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.postgres import EmbeddedPostgres
from shared.db import Database
from shared.migrations import SQL_DIR, MigrationError, migrate, migration_files, sync_models


@pytest.fixture
def fresh_db(postgres: EmbeddedPostgres) -> Iterator[Database]:
    """An empty database on the session's server."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"create database {name}".encode())
    database = Database(postgres.url_for(name), max_size=2)
    yield database
    database.close()
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"drop database {name} with (force)".encode())


def test_migrations_apply_once_in_order(fresh_db: Database) -> None:
    """A fresh database gets every file in order; a second run applies nothing."""
    names = [p.name for p in migration_files()]
    assert migrate(fresh_db) == names == sorted(names)
    assert migrate(fresh_db) == []
    with fresh_db.transaction() as tx:
        recorded = [r[0] for r in tx.query("select name from schema_migrations order by version")]
    assert recorded == names


def test_a_failing_migration_leaves_nothing_behind(fresh_db: Database, tmp_path: Path) -> None:
    """A migration that fails half-way is rolled back whole and not recorded."""
    for path in migration_files():
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "9999_broken.sql").write_text(
        "create table half_done (id int);\nselect no_such_function();\n"
    )
    with pytest.raises(MigrationError, match=r"9999_broken\.sql: .*no_such_function"):
        migrate(fresh_db, tmp_path)
    with fresh_db.transaction() as tx:
        assert tx.query("select to_regclass('half_done')") == [(None,)]
        assert tx.query("select count(*) from schema_migrations where version = '9999'") == [(0,)]


def test_misnamed_files_are_refused(tmp_path: Path) -> None:
    """A file not named NNNN_name.sql is refused rather than silently skipped."""
    (tmp_path / "0001_ok.sql").write_text("select 1;")
    (tmp_path / "2_bad.sql").write_text("select 1;")
    with pytest.raises(ValueError, match=r"2_bad\.sql"):
        migration_files(tmp_path)


def test_catalog_sync_writes_every_model(fresh_db: Database) -> None:
    """sync_models writes one models row per catalog entry, idempotently."""
    migrate(fresh_db)
    count = sync_models(fresh_db)
    assert sync_models(fresh_db) == count
    with fresh_db.transaction() as tx:
        assert tx.query("select count(*) from models") == [(count,)]


def test_sql_dir_is_the_repos() -> None:
    """The runner reads the repository's sql/ directory."""
    assert SQL_DIR.name == "sql" and (SQL_DIR / "0001_core.sql").exists()
