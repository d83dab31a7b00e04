"""Embedded PostgreSQL from the ``pgserver`` wheel: a real server in a data directory, no install needed."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pgserver  # type: ignore[attr-defined,unused-ignore]


class EmbeddedPostgres:
    """A PostgreSQL server kept in ``data_dir``, reached over its unix socket."""

    def __init__(self, data_dir: Path, *, cleanup: str | None = "stop") -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver logs every initdb/pg_ctl command line at INFO; only its warnings and errors matter here.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp, which is fine here.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            _forget_dead_handles(data_dir.resolve())
            self._server: Any = pgserver.get_server(  # type: ignore[attr-defined,unused-ignore]
                str(data_dir.resolve()), cleanup_mode=cleanup
            )

    @property
    def url(self) -> str:
        """A libpq URL for the ``postgres`` database."""
        return str(self._server.get_uri())

    def url_for(self, database: str) -> str:
        """A libpq URL for another database on the same server."""
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        """Stop the server (pgserver keeps it running while other processes still use it)."""
        self._server.cleanup()


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that no longer exist from pgserver's list of the server's users.

    pgserver stops the server when its last user (a process id in ``.handle_pids.json``) lets go. A process
    killed with SIGKILL never lets go, so after one the server would never be stopped again; the ids of processes
    that are gone are removed here, under pgserver's own lock, before a new user is added.
    """
    from pgserver.postgres_server import PostgresServer

    path = data_dir / ".handle_pids.json"
    with PostgresServer._lock:
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True
