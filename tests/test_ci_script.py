"""The CI entry point is a valid shell script that ends by running the README's test command."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_run_parses_and_runs_make_test() -> None:
    """`.ci/run` passes `bash -n` (a broken script fails CI before any test) and its last command is make test."""
    script = ROOT / ".ci" / "run"
    subprocess.run(["bash", "-n", str(script)], check=True)
    commands = [
        line.strip() for line in script.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert commands[0] == "set -euo pipefail" and commands[-1] == "make test"
