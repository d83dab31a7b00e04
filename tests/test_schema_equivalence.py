"""A fresh database and one upgraded from an earlier release end up with identical schemas and procedures.

The earlier release's migrations are read from git at test time (nothing of them is copied into the repository),
applied as that release applied them, and the database is then migrated with the current code. Tables, columns,
types, defaults, constraints, indexes, sequences, triggers and every function's ``pg_get_functiondef`` must then
equal those of a database built from the current ``sql/`` alone.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.postgres import EmbeddedPostgres
from shared.db import Database
from shared.migrations import SQL_DIR, migrate
from tests.conftest import empty_database

REPO = SQL_DIR.parent
RELEASES = {
    "9dd1b22ea286622111040f5761ab97c0a322b41a": "the previous release (migrations 0001-0006)",
    "c6170103b56616565662532438bd60ccfd58b9a2": "the last commit with procedures inside the numbered migrations",
}

# Everything in the current schema that migrations create, each as sorted rows (pg_catalog, information_schema).
SNAPSHOT = {
    "relations": """
        select c.relname, c.relkind, c.relpersistence, c.relrowsecurity, pg_get_userbyid(c.relowner)
          from pg_class c where c.relnamespace = current_schema()::regnamespace""",
    "columns": """
        select table_name, ordinal_position, column_name, data_type, udt_name, character_maximum_length,
               numeric_precision, column_default, is_nullable, is_identity, identity_generation, is_generated,
               collation_name
          from information_schema.columns where table_schema = current_schema()""",
    "column_types": """
        select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
          from pg_attribute a join pg_class c on c.oid = a.attrelid
         where c.relnamespace = current_schema()::regnamespace and a.attnum > 0 and not a.attisdropped""",
    "constraints": """
        select conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
          from pg_constraint where connamespace = current_schema()::regnamespace""",
    "indexes": "select tablename, indexname, indexdef from pg_indexes where schemaname = current_schema()",
    "sequences": """
        select sequencename, data_type::text, start_value, min_value, max_value, increment_by, cycle
          from pg_sequences where schemaname = current_schema()""",
    "types": """
        select t.typname, t.typtype, array(select e.enumlabel::text from pg_enum e where e.enumtypid = t.oid
                                           order by e.enumsortorder)
          from pg_type t where t.typnamespace = current_schema()::regnamespace and t.typtype in ('e', 'd', 'r')""",
    "triggers": """
        select t.tgrelid::regclass::text, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid)
          from pg_trigger t join pg_class c on c.oid = t.tgrelid
         where c.relnamespace = current_schema()::regnamespace and not t.tgisinternal""",
    "functions": """
        select p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text, pg_get_userbyid(p.proowner)
          from pg_proc p where p.pronamespace = current_schema()::regnamespace""",
    "policies": "select tablename, policyname, cmd, qual, with_check from pg_policies where schemaname = current_schema()",
    "extensions": "select extname from pg_extension",
    "migrations": "select version, name from schema_migrations",
}


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """The schema of ``database``, one sorted list of rows per kind of object."""
    with database.transaction() as tx:
        return {kind: sorted(tx.query(query), key=repr) for kind, query in SNAPSHOT.items()}


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def release_migrations(commit: str, into: Path) -> list[str]:
    """Write the numbered migrations of ``commit`` into ``into``, read from git; skip when history is missing."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the earlier release's migrations are read from git history")
    if _git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("not a git checkout: the earlier release's migrations are read from git history")
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            pytest.skip(f"shallow clone: commit {commit[:7]} is not in its history (git fetch --unshallow)")
        pytest.fail(f"commit {commit[:7]} ({RELEASES[commit]}) is not in this repository's history")
    listing = _git("ls-tree", "--name-only", commit, "sql/")
    assert listing.returncode == 0, listing.stderr
    names = []
    for path in listing.stdout.split():
        if path.endswith(".sql"):
            show = _git("show", f"{commit}:{path}")
            assert show.returncode == 0, show.stderr
            (into / Path(path).name).write_text(show.stdout)
            names.append(Path(path).name)
    assert names, f"no migrations in {commit[:7]}:sql/"
    return sorted(names)


@pytest.fixture(scope="module")
def fresh(postgres: EmbeddedPostgres) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """The schema of a database built from the current sql/ alone."""
    with empty_database(postgres) as database:
        migrate(database)
        yield snapshot(database)


@pytest.mark.parametrize("commit", list(RELEASES), ids=[c[:7] for c in RELEASES])
def test_upgraded_database_equals_a_fresh_one(
    commit: str,
    fresh: dict[str, list[tuple[Any, ...]]],
    postgres: EmbeddedPostgres,
    tmp_path: Path,
) -> None:
    """Migrations of ``commit`` as it applied them, then the current migrate: the schema of a fresh database."""
    names = release_migrations(commit, tmp_path)
    with empty_database(postgres) as upgraded:
        # That release's runner: each file once, in order, recorded in schema_migrations (no sql/procedures/).
        assert migrate(upgraded, tmp_path) == names
        migrate(upgraded)
        assert snapshot(upgraded) == fresh
        assert len(fresh["functions"]) > 50 and len(fresh["triggers"]) >= 8 and len(fresh["columns"]) > 100

        # The comparison sees a changed body and a changed default.
        with upgraded.transaction() as tx:
            tx.script(
                "create or replace function job_for_provider(p_job uuid) returns jsonb language sql stable"
                " as $$ select null::jsonb $$;"
                "alter table uploads alter column width set default 0"
            )
        changed = snapshot(upgraded)
        assert [kind for kind in SNAPSHOT if changed[kind] != fresh[kind]] == ["columns", "functions"]
