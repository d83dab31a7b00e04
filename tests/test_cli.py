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
    assert [v["job_id"] for v in listed["jobs"]] == [job_id] and listed["next_cursor"] is None
    assert _json(i2v(caller, stack, "status", job_id, "--json"))["status"] == "completed"
    saved = _json(i2v(caller, stack, "download", job_id, "--output-dir", str(tmp_path), "--json"))
    path = Path(saved["path"])
    assert path.name.startswith(f"{job_id}_local-motion_") and path.stat().st_size == saved["bytes"]
    with av.open(str(path)) as container:
        assert job_id in container.metadata["comment"]


def test_jobs_lists_images_beside_videos_and_filters_by_kind(caller: Caller, stack: str) -> None:
    """``i2v jobs`` shows image jobs too; ``--kind`` keeps one kind, and the table names each row's kind."""
    video_id = _finished_job(caller)
    caller.grant(1)
    image = caller.http.post(
        "/functions/v1/generate-image",
        json={"model_id": "local-card", "prompt": "a title"},
        headers={"Idempotency-Key": "cli-image"},
    )
    assert image.status_code == 202, image.text
    image_id = image.json()["job_id"]
    every = _json(i2v(caller, stack, "jobs", "--all", "--json"))["jobs"]
    assert [(j["job_id"], j["kind"]) for j in every] == [(image_id, "image"), (video_id, "video")]
    assert [j["job_id"] for j in _json(i2v(caller, stack, "jobs", "--kind", "image", "--json"))["jobs"]] == [
        image_id
    ]
    assert [j["job_id"] for j in _json(i2v(caller, stack, "jobs", "--kind", "video", "--json"))["jobs"]] == [
        video_id
    ]
    table = i2v(caller, stack, "jobs")
    assert table.exit_code == 0 and "image" in table.output and "local-card" in table.output
    refused = i2v(caller, stack, "jobs", "--kind", "audio")
    assert refused.exit_code == 2 and "audio" in refused.output


def test_cancel_of_a_finished_job_explains_the_refusal(caller: Caller, stack: str) -> None:
    """Cancelling a completed job exits 1 with the API's invalid_transition error."""
    job_id = _finished_job(caller)
    result = i2v(caller, stack, "cancel", job_id)
    assert result.exit_code == 1 and "invalid_transition" in result.output


def test_missing_token_is_explained(stack: str) -> None:
    """A command that needs a token says how to provide one and exits 2."""
    result = i2v(None, stack, "jobs")
    assert result.exit_code == 2 and "I2V_TOKEN" in result.output


def test_upload_prints_the_image_url_and_sends_content_once(caller: Caller, stack: str) -> None:
    """``i2v upload FILE`` prints the image_url; the same file again is recognised and not sent twice."""
    from tests.media_support import EXAMPLES

    first = i2v(caller, stack, "upload", str(EXAMPLES / "square.jpg"))
    assert first.exit_code == 0, first.output
    assert "uploaded" in first.stderr and "already" not in first.stderr
    again = i2v(caller, stack, "upload", str(EXAMPLES / "square.jpg"), "--json")
    stored = _json(again)
    assert stored["already_uploaded"] is True and stored["image_url"] == first.stdout.strip()
    assert "already uploaded, nothing sent" in again.stderr


def test_generate_waits_and_downloads_one_video(caller: Caller, stack: str, tmp_path: Path) -> None:
    """``i2v generate IMAGE --prompt … --download`` shows the price, follows the job and saves the video under
    its documented name, charged once."""
    from tests.media_support import EXAMPLES

    caller.grant(5)
    result = i2v(
        caller, stack, "generate", str(EXAMPLES / "landscape.jpg"), "--prompt", "pan right",
        "--duration", "1", "--resolution", "480p", "--download", "--output-dir", str(tmp_path),
        "--poll-interval", "0.1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "price: 1 credits (balance 5 → 4)" in result.stderr and "completed" in result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == tmp_path and path.name.endswith(".mp4") and "_local-motion_" in path.name
    with av.open(str(path)) as video:
        assert video.metadata.get("title") == "pan right"
    assert caller.balance() == 4


def test_generate_refusal_is_explained(caller: Caller, stack: str) -> None:
    """``i2v generate`` without credits exits 1 and says what the video costs and how to add credits."""
    from tests.media_support import EXAMPLES

    result = i2v(caller, stack, "generate", str(EXAMPLES / "portrait.jpg"), "--duration", "2")
    assert result.exit_code == 1
    assert "insufficient_credits" in result.stderr and "costs 2 credits" in result.stderr


def test_tables_show_ids_and_slugs_in_full(caller: Caller, stack: str) -> None:
    """On an 80-column terminal the jobs, credits and models tables print every job id and slug whole, and
    the models table has the price in credits."""
    job_id = _finished_job(caller)
    env = {"I2V_API_URL": stack, "I2V_TOKEN": caller.token, "COLUMNS": "80"}
    for args in (["jobs"], ["credits"]):
        out = CliRunner().invoke(app, args, env=env).stdout
        assert job_id in out, out
    models = CliRunner().invoke(app, ["models"], env=env).stdout
    assert "price: credits per video" in models
    local = next(line for line in models.splitlines() if "local-motion" in line)
    assert "1–10" in local, local
    for slug in ("local-motion", "kling-2.1-standard"):
        assert slug in models, models


def test_campaigns_commands_create_list_and_budget(caller: Caller, stack: str) -> None:
    """i2v campaigns clients --create, create --budget, list and update --no-budget work against the API."""
    clients = _json(i2v(caller, stack, "campaigns", "clients", "--create", "Acme"))
    client_id = clients["clients"][0]["id"]
    made = _json(i2v(caller, stack, "campaigns", "create", "Spring", "--client", client_id, "--budget", "7"))
    assert made["budget_credits"] == 7 and made["client_id"] == client_id
    listed = i2v(caller, stack, "campaigns", "list", "--client", client_id, "--json")
    assert [c["id"] for c in _json(listed)["campaigns"]] == [made["id"]]
    table = i2v(caller, stack, "campaigns", "list")
    assert table.exit_code == 0 and made["id"] in table.output
    cleared = _json(i2v(caller, stack, "campaigns", "update", made["id"], "--no-budget", "--archive"))
    assert cleared["budget_credits"] is None and cleared["archived"] is True


def test_image_defaults_to_a_model_the_server_can_run_and_downloads(
    caller: Caller, stack: str, tmp_path: Path
) -> None:
    """``i2v image`` without --model on a stack with no provider keys says it uses local-card, makes the image,
    charges it once and saves it as {image_id}.{ext}; the id it prints is one ``--image-id`` can start from."""
    caller.grant(3)
    args = ("image", "a lighthouse at dusk", "--download", "--output-dir", str(tmp_path), "--json")
    made = i2v(caller, stack, *args)
    assert made.exit_code == 0, made.output
    assert "model local-card: nano-banana is not available" in made.stderr
    job = json.loads(made.stdout)
    assert job["status"] == "completed" and job["model"] == "local-card"
    (image,) = job["images"]
    (saved,) = job["paths"]
    assert (
        Path(saved) == tmp_path / f"{image['image_id']}.jpg"
        and Path(saved).read_bytes()[:3] == b"\xff\xd8\xff"
    )
    assert caller.balance() == 2
    listed = _json(i2v(caller, stack, "jobs", "--kind", "image", "--json"))["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]


def test_image_refusal_is_shown_and_charges_nothing(caller: Caller, stack: str) -> None:
    """An image id that is not the caller's is refused: ``i2v image`` exits 1 with the API's words, uncharged."""
    caller.grant(3)
    unknown = "5fbaa8e3-dd87-4d6c-aee5-ed63af2bd933"
    refused = i2v(caller, stack, "image", "x", "--model", "local-card", "--image", unknown)
    assert refused.exit_code == 1 and f"No image {unknown} for this user" in refused.output, refused.output
    assert caller.balance() == 3
