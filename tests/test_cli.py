"""The API-client commands of ``i2v`` (models, credits, jobs, status, download, cancel) against the stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
from typer.testing import CliRunner, Result

from client.cli import app
from tests.conftest import Caller
from tests.test_video_status import wait_for


def i2v(caller: Caller | None, stack: str, *args: str) -> Result:
    """Run an ``i2v`` command in-process as the caller (or without a token)."""
    env = {"I2V_API_URL": stack, "I2V_TOKEN": caller.token if caller else ""}
    return CliRunner().invoke(app, list(args), env=env)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _finished_job(caller: Caller) -> str:
    caller.grant(5)
    settings = {"duration": 1, "resolution": "480p", "aspect_ratio": "16:9"}
    created = caller.generate(
        model_id="local-motion", prompt="zoom", image_url=caller.upload(), settings=settings
    )
    job_id: str = created.json()["job_id"]
    assert wait_for(caller, job_id)["status"] == "completed"
    return job_id


def test_models_needs_no_token(stack: str) -> None:
    """``i2v models --json`` lists the catalog without credentials."""
    models = _json(i2v(None, stack, "models", "--json"))
    assert "local-motion" in {m["slug"] for m in models}


def test_credits_without_subcommand_shows_the_balance(caller: Caller, stack: str) -> None:
    """``i2v credits --json`` reads the balance through the API; ``grant`` is still a subcommand."""
    caller.grant(7)
    assert _json(i2v(caller, stack, "credits", "--json"))["balance"] == 7
    assert "grant" in i2v(caller, stack, "credits", "--help").output


def test_jobs_status_and_download(caller: Caller, stack: str, tmp_path: Path) -> None:
    """A finished job is listed, its status shown, and its video downloaded with the job id in its tags."""
    job_id = _finished_job(caller)
    listed = _json(i2v(caller, stack, "jobs", "--status", "completed", "--json"))
    assert [v["job_id"] for v in listed["videos"]] == [job_id] and listed["next_cursor"] is None
    assert _json(i2v(caller, stack, "status", job_id, "--json"))["status"] == "completed"
    saved = _json(i2v(caller, stack, "download", job_id, "--output-dir", str(tmp_path), "--json"))
    path = Path(saved["path"])
    assert path.name.startswith(f"{job_id}_local-motion_") and path.stat().st_size == saved["bytes"]
    with av.open(str(path)) as container:
        assert job_id in container.metadata["comment"]


def test_cancel_of_a_finished_job_explains_the_refusal(caller: Caller, stack: str) -> None:
    """Cancelling a completed job exits 1 with the API's invalid_transition error."""
    job_id = _finished_job(caller)
    result = i2v(caller, stack, "cancel", job_id)
    assert result.exit_code == 1 and "invalid_transition" in result.output


def test_missing_token_is_explained(stack: str) -> None:
    """A command that needs a token says how to provide one and exits 2."""
    result = i2v(None, stack, "jobs")
    assert result.exit_code == 2 and "I2V_TOKEN" in result.output
