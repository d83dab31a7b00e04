"""Migrations: numbered files applied once, in order, each in a transaction; procedure files re-applied on every
run, each function defined in one of them; the catalog synced."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from infra.postgres import EmbeddedPostgres
from shared import errors
from shared.db import Database
from shared.migrations import (
    SQL_DIR,
    MigrationError,
    migrate,
    migration_files,
    procedure_files,
    render_procedures,
    sync_models,
)
from tests.conftest import empty_database

_CREATE_FUNCTION = re.compile(r"^\s*create\s+(or\s+replace\s+)?function\s+(\w+)\s*\(", re.M | re.I)
_CREATE_TRIGGER = re.compile(
    r"^\s*create\s+(?:or\s+replace\s+)?(?:constraint\s+)?trigger\s+(\w+)", re.M | re.I
)
_DOLLAR_QUOTE = re.compile(r"\$(\w*)\$")


@pytest.fixture
def fresh_db(postgres: EmbeddedPostgres) -> Iterator[Database]:
    """An empty database on the session's server."""
    with empty_database(postgres) as database:
        yield database


def procedure_definitions() -> dict[str, list[tuple[str, str]]]:
    """Every function sql/procedures/ defines: name -> [(file name, body between its dollar quotes)]."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in procedure_files():
        text = render_procedures(path.read_text())
        for match in _CREATE_FUNCTION.finditer(text):
            assert match.group(1), f"{path.name}: {match.group(2)} must be created with create or replace"
            opening = _DOLLAR_QUOTE.search(text, match.end())
            assert opening is not None, f"{path.name}: {match.group(2)} has no dollar-quoted body"
            closing = text.index(opening.group(0), opening.end())
            found.setdefault(match.group(2), []).append((path.name, text[opening.end() : closing]))
    return found


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
    """The runner reads the repository's sql/ directory and its procedures/."""
    assert SQL_DIR.name == "sql" and (SQL_DIR / "0001_core.sql").exists()
    assert [p.parent for p in procedure_files()] == [SQL_DIR / "procedures"] * len(procedure_files()) != []


def test_every_function_is_defined_once_in_sql_procedures(fresh_db: Database) -> None:
    """Each live function has exactly one definition, in sql/procedures/, and runs that file's body verbatim
    (its ``{{NAME}}`` constants filled in from shared.limits)."""
    migrate(fresh_db)
    defined = procedure_definitions()
    with fresh_db.transaction() as tx:
        live = tx.query(
            "select proname, prosrc from pg_proc where pronamespace = current_schema()::regnamespace"
        )
    assert sorted(name for name, _ in live) == sorted(defined)  # one function per name: no overloads
    twice = {name: [f for f, _ in where] for name, where in defined.items() if len(where) > 1}
    assert twice == {}
    assert [name for name, body in live if body != defined[name][0][1]] == []


def test_rls_sql_names_every_procedure() -> None:
    """docs/rls.sql revokes EXECUTE on every function sql/procedures/ defines, by name, and names nothing else."""
    text = (SQL_DIR.parent / "docs" / "rls.sql").read_text()
    listed = text[
        text.index("p.proname = any (array[") : text.index("])", text.index("p.proname = any (array["))
    ]
    assert sorted(re.findall(r"'(\w+)'", listed)) == sorted(procedure_definitions())


def test_numbered_migrations_define_no_function_or_trigger() -> None:
    """Functions and triggers are written in sql/procedures/ only, never in a numbered migration."""
    for path in migration_files():
        text = path.read_text()
        functions = [m.group(2) for m in _CREATE_FUNCTION.finditer(text)]
        triggers = _CREATE_TRIGGER.findall(text)
        assert functions == [] and triggers == [], f"{path.name}: define these in sql/procedures/"


def test_every_trigger_is_created_by_sql_procedures(fresh_db: Database) -> None:
    """The live triggers are exactly those the procedure files create, each created once."""
    migrate(fresh_db)
    created = [name for path in procedure_files() for name in _CREATE_TRIGGER.findall(path.read_text())]
    with fresh_db.transaction() as tx:
        live = [
            r[0]
            for r in tx.query(
                "select t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid"
                " where c.relnamespace = current_schema()::regnamespace and not t.tgisinternal"
            )
        ]
    assert len(created) == len(set(created))
    assert sorted(live) == sorted(created)


def test_procedures_are_reapplied_on_every_run(fresh_db: Database) -> None:
    """A function changed in the database and a trigger dropped are both restored by the next migrate."""
    migrate(fresh_db)
    with fresh_db.transaction() as tx:
        before = tx.query("select pg_get_functiondef('job_counts(uuid)'::regprocedure)")
        tx.script(
            "create or replace function job_counts(p_user uuid) returns jsonb language sql stable"
            " as $$ select '{}'::jsonb $$;"
            "drop trigger credit_ledger_no_update on credit_ledger"
        )
    assert migrate(fresh_db) == []
    with fresh_db.transaction() as tx:
        assert tx.query("select pg_get_functiondef('job_counts(uuid)'::regprocedure)") == before
        assert tx.query(
            "select count(*) from pg_trigger where tgrelid = 'credit_ledger'::regclass"
            " and tgname = 'credit_ledger_no_update'"
        ) == [(1,)]


def test_reapplying_procedures_waits_for_no_writer(fresh_db: Database) -> None:
    """A no-op migrate takes no table lock that conflicts with a write: it completes while another transaction
    holds ROW EXCLUSIVE (what INSERT, UPDATE and DELETE take) on every table, so writers never queue behind it."""
    migrate(fresh_db)
    with psycopg.connect(fresh_db.url) as writer:
        tables = [
            r[0]
            for r in writer.execute(
                "select format('%I', relname) from pg_class"
                " where relnamespace = current_schema()::regnamespace and relkind = 'r'"
            )
        ]
        writer.execute(f"lock table {', '.join(tables)} in row exclusive mode".encode())
        impatient = Database(fresh_db.url, max_size=1, statement_timeout_ms=3000)
        try:
            started = time.monotonic()
            assert migrate(impatient) == []
            assert time.monotonic() - started < 3
        finally:
            impatient.close()


def test_concurrent_migrators_take_turns(fresh_db: Database) -> None:
    """Two migrators at once on a fresh database: each migration applied once, by one of them; both succeed."""
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: migrate(fresh_db), range(2)))
    assert sorted(results[0] + results[1]) == [p.name for p in migration_files()]


def test_a_failing_procedure_file_changes_nothing(fresh_db: Database, tmp_path: Path) -> None:
    """The procedure files apply in one transaction: one failing file rolls back the others; the error names it."""
    shutil.copytree(SQL_DIR, tmp_path / "sql")
    procedures = tmp_path / "sql" / "procedures"
    with (procedures / "accounts_ledger.sql").open("a") as file:
        file.write("\ncreate or replace function probe() returns int language sql as $$ select 1 $$;\n")
    (procedures / "zz_broken.sql").write_text(
        "create or replace function broken() returns int\nlanguage sql as $$\n  select no_such_column from video_jobs;\n$$;\n"
    )
    with pytest.raises(MigrationError, match=r"procedures/zz_broken\.sql: .*no_such_column"):
        migrate(fresh_db, tmp_path / "sql")
    with fresh_db.transaction() as tx:
        assert tx.query("select to_regprocedure('probe()')") == [(None,)]
        assert tx.query("select count(*) from schema_migrations") == [(len(migration_files()),)]


def test_procedure_constants_come_from_shared_limits(fresh_db: Database) -> None:
    """A limit the procedures enforce is the Python constant: list_videos refuses one past LIST_PAGE_LIMIT."""
    from shared import limits

    assert "{{LIST_PAGE_LIMIT}}" in (SQL_DIR / "procedures" / "jobs.sql").read_text()
    migrate(fresh_db)
    user = uuid.uuid4()
    page = fresh_db.call(
        "list_videos",
        user=user,
        status=None,
        limit=limits.LIST_PAGE_LIMIT,
        cursor_created=None,
        cursor_id=None,
    )
    assert page == {"jobs": [], "next": None}
    with pytest.raises(errors.BadRequest, match=f"between 1 and {limits.LIST_PAGE_LIMIT}"):
        fresh_db.call(
            "list_videos",
            user=user,
            status=None,
            limit=limits.LIST_PAGE_LIMIT + 1,
            cursor_created=None,
            cursor_id=None,
        )


def test_an_unknown_procedure_constant_is_refused() -> None:
    """A procedure file naming a constant shared.limits does not define cannot be applied."""
    with pytest.raises(MigrationError, match="NO_SUCH_LIMIT"):
        render_procedures("select {{NO_SUCH_LIMIT}};")


def test_provider_status_is_rewritten_in_our_own_words(fresh_db: Database, tmp_path: Path) -> None:
    """Jobs stored with a provider's own status words before 0015 read 'queued', 'running' and 'submit_unknown'
    after it (and COMPLETED, succeeded); the column refuses any other word from then on."""
    before = tmp_path / "sql"
    shutil.copytree(SQL_DIR, before)
    (before / "0015_provider_status_words.sql").unlink()
    migrate(fresh_db, before)
    sync_models(fresh_db)
    user = uuid.uuid4()
    fresh_db.call("ensure_account", user=user, signup_credits=0)
    old_words = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED", "SUBMIT_UNKNOWN", None)
    with fresh_db.transaction() as tx:
        model = tx.query("select id, slug from models where slug = 'local-motion'")[0]
        ids = [
            tx.query(
                "insert into video_jobs (user_id, model_id, model_slug, provider, status, prompt, credits_used,"
                " provider_status) values (%s, %s, %s, 'local', 'pending', 'p', 1, %s) returning id",
                (user, model[0], model[1], word),
            )[0][0]
            for word in old_words
        ]
    assert migrate(fresh_db) == ["0015_provider_status_words.sql"]
    with fresh_db.transaction() as tx:
        rows = dict(tx.query("select id, provider_status from video_jobs where id = any(%s)", (ids,)))
    assert [rows[i] for i in ids] == ["queued", "running", "succeeded", "submit_unknown", None]
    with pytest.raises(errors.I2VError) as refused, fresh_db.transaction() as tx:
        tx.query("update video_jobs set provider_status = 'IN_QUEUE' where id = %s", (ids[0],))
    assert isinstance(refused.value.__cause__, psycopg.errors.CheckViolation)


def test_endpoints_disabled_before_0017_say_why(fresh_db: Database, tmp_path: Path) -> None:
    """An endpoint disabled before 0017 reads 'gone' when a delivery to it was answered 410, else 'deleted'; an
    enabled one has no reason; from then on a disabled endpoint must say why."""
    before = tmp_path / "sql"
    shutil.copytree(SQL_DIR, before)
    (before / "0017_webhook_endpoint_disabling.sql").unlink()
    shutil.rmtree(before / "procedures")  # the current procedures name 0017's columns
    migrate(fresh_db, before)
    user = uuid.uuid4()
    with fresh_db.transaction() as tx:
        tx.query("insert into accounts (user_id) values (%s)", (user,))
        gone, deleted, live = (
            tx.query(
                "insert into webhook_endpoints (user_id, url, events, secret, disabled_at)"
                " values (%s, 'https://example.com/h', '{job.completed}', 'whsec_x', %s) returning id",
                (user, disabled),
            )[0][0]
            for disabled in ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", None)
        )
        for endpoint, status in ((gone, 410), (deleted, 500), (live, 204)):
            tx.query(
                "insert into webhook_deliveries (user_id, endpoint_id, url, event_type, payload, state,"
                " last_status) values (%s, %s, 'https://example.com/h', 'job.completed', '{}', 'failed', %s)",
                (user, endpoint, status),
            )
    assert migrate(fresh_db) == ["0017_webhook_endpoint_disabling.sql"]
    with fresh_db.transaction() as tx:
        reasons = dict(
            tx.query("select id, disabled_reason from webhook_endpoints where user_id = %s", (user,))
        )
    assert reasons == {gone: "gone", deleted: "deleted", live: None}
    with pytest.raises(errors.I2VError) as refused, fresh_db.transaction() as tx:
        tx.query("update webhook_endpoints set disabled_at = now() where id = %s", (live,))
    assert isinstance(refused.value.__cause__, psycopg.errors.CheckViolation)
