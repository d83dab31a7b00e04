"""Embedded PostgreSQL from the ``pgserver`` wheel: a real server in a data directory, no install needed."""

from __future__ import annotations

import logging
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
