"""Scratch directories under I2V_HOME for one job's files (on the storage's filesystem, so that finished files
can be renamed into local storage), and their removal after a crash."""

from __future__ import annotations

import os
import shutil
import tempfile
from uuid import UUID

from shared.settings import get_settings


def work_dir(job_id: UUID | None = None) -> tempfile.TemporaryDirectory[str]:
    """A scratch directory for one job's files, under I2V_HOME (so finished files can be renamed into storage).

    Its name, ``job-<pid>-[<job id>-]<random>``, says which process uses it (see :func:`remove_stale_work_dirs`).
    """
    base = get_settings().home / "work"
    base.mkdir(parents=True, exist_ok=True)
    prefix = f"job-{os.getpid()}-" + (f"{job_id}-" if job_id is not None else "")
    return tempfile.TemporaryDirectory(prefix=prefix, dir=base)


def remove_stale_work_dirs() -> int:
    """Delete the scratch directories of processes that are gone (e.g. killed mid-render); return how many.

    A directory whose name carries the id of a live process other than this one is left alone: another i2v
    process (``i2v reconcile``, a second server) may be using it.
    """
    base = get_settings().home / "work"
    if not base.is_dir():
        return 0
    removed = 0
    for path in base.glob("job-*"):
        owner = path.name.split("-")[1]
        if owner.isdigit() and (int(owner) == os.getpid() or _process_alive(int(owner))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
