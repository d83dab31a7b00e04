"""Limits that the stored procedures and the Python code both enforce, defined once.

The procedure files in ``sql/procedures/`` write them as ``{{NAME}}``; ``shared.migrations`` fills each one in from
this module when it applies the files, and refuses a file that names one not defined here.
"""

from __future__ import annotations

#: The most jobs or ledger entries one list page returns (``list-videos``, ``get-credits``).
LIST_PAGE_LIMIT = 200
#: Attempts at copying a finished video into storage before the job fails and is refunded.
MIRROR_ATTEMPT_LIMIT = 10


def sql_constants() -> dict[str, int]:
    """The constants the procedure files may name, by name."""
    return {"LIST_PAGE_LIMIT": LIST_PAGE_LIMIT, "MIRROR_ATTEMPT_LIMIT": MIRROR_ATTEMPT_LIMIT}
