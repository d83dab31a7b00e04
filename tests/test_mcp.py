"""``i2v mcp`` end to end: the SDK's own stdio client launches the server against the running stack."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from tests.conftest import EXAMPLES, Caller
from tests.teams_support import campaign

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
FAST = {"duration": 1, "resolution": "480p", "aspect_ratio": "16:9"}
ARGS = {
    "image": str(EXAMPLES / "landscape.jpg"),
    "prompt": "slow zoom in",
    "model": "local-motion",
    "settings": FAST,
}


def with_server(caller: Caller, stack: str, scenario: Callable[[Client], Awaitable[T]]) -> T:
    """Launch ``python -m client mcp`` as the caller and run a scenario against it over stdio."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "client", "mcp"],
        env={"I2V_API_URL": stack, "I2V_TOKEN": caller.token},
        cwd=str(ROOT),
    )

    async def main() -> T:
        async with Client(params) as client:
            return await scenario(client)

    return anyio.run(main)


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def _data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return result.structured_content


def test_lists_the_tools(caller: Caller, stack: str) -> None:
    """The server offers the ten i2v tools."""

    async def scenario(client: Client) -> set[str]:
        return {tool.name for tool in (await client.list_tools()).tools}

    assert with_server(caller, stack, scenario) == {
        "list_models",
        "quote_video",
        "generate_video",
        "quote_image",
        "generate_image",
        "list_jobs",
        "list_campaigns",
        "get_video_status",
        "wait_for_video",
        "cancel_video",
        "get_credits",
        "download_video",
    }


def test_quote_prices_without_charging(caller: Caller, stack: str) -> None:
    """quote_video returns the credits, the balance and the balance after, and charges nothing."""
    caller.grant(5)

    async def scenario(client: Client) -> dict[str, Any]:
        return _data(await client.call_tool("quote_video", ARGS))

    quote = with_server(caller, stack, scenario)
    assert (quote["credits"], quote["balance"], quote["balance_after"]) == (1, 5, 4)
    assert caller.balance() == 5


def test_generate_without_confirm_is_refused(caller: Caller, stack: str) -> None:
    """generate_video without confirm=true submits nothing and says what it would cost."""
    caller.grant(5)

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("generate_video", ARGS)

    result = with_server(caller, stack, scenario)
    assert result.is_error and "Not submitted" in _text(result) and "1 credits" in _text(result)
    assert caller.http.get("/functions/v1/list-videos").json()["videos"] == []
    assert caller.balance() == 5


def test_confirm_without_a_quote_is_refused(caller: Caller, stack: str) -> None:
    """confirm=true is refused until the same arguments were quoted in the session."""
    caller.grant(5)

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("generate_video", {**ARGS, "confirm": True})

    result = with_server(caller, stack, scenario)
    assert result.is_error and "Quote first" in _text(result)
    assert caller.balance() == 5


def test_confirmed_job_is_followed_with_progress_and_downloaded(
    caller: Caller, stack: str, tmp_path: Path
) -> None:
    """After a quote, confirm submits; wait_for_video reports progress until completed; download_video saves it."""
    caller.grant(5)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def scenario(client: Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        _data(await client.call_tool("quote_video", ARGS))
        created = _data(await client.call_tool("generate_video", {**ARGS, "confirm": True}))
        done = _data(
            await client.call_tool(
                "wait_for_video", {"job_id": created["job_id"]}, progress_callback=on_progress
            )
        )
        saved = _data(
            await client.call_tool("download_video", {"job_id": created["job_id"], "path": str(tmp_path)})
        )
        return created, done, saved

    created, done, saved = with_server(caller, stack, scenario)
    assert created["credits_used"] == 1 and caller.balance() == 4
    assert done["done"] is True and done["status"] == "completed"
    assert progress and progress[-1] == 100.0 and progress == sorted(progress)
    assert Path(saved["path"]).parent == tmp_path and saved["bytes"] > 1000
    assert Path(saved["path"]).name.startswith(created["job_id"])


def test_retry_with_the_same_request_id_charges_once(caller: Caller, stack: str) -> None:
    """Repeating generate_video with the same arguments and request_id replays the job; a new request_id is new."""
    caller.grant(5)

    async def scenario(client: Client) -> list[str]:
        _data(await client.call_tool("quote_video", ARGS))
        ids = []
        for request_id in ("r-1", "r-1", "r-2"):
            args = {**ARGS, "confirm": True, "request_id": request_id}
            ids.append(_data(await client.call_tool("generate_video", args))["job_id"])
        return ids

    first, retry, other = with_server(caller, stack, scenario)
    assert first == retry != other
    assert caller.balance() == 3


def test_invalid_settings_error_lists_allowed_values(caller: Caller, stack: str) -> None:
    """An unsupported setting is a tool error naming the field and the allowed values."""

    async def scenario(client: Client) -> CallToolResult:
        return await client.call_tool("quote_video", {**ARGS, "settings": {**FAST, "resolution": "4k"}})

    result = with_server(caller, stack, scenario)
    assert result.is_error
    assert "settings.resolution" in _text(result) and "480p" in _text(result)


def test_insufficient_credits_is_a_clear_error(caller: Caller, stack: str) -> None:
    """With no credits, a confirmed generate_video fails saying credits are insufficient."""

    async def scenario(client: Client) -> CallToolResult:
        _data(await client.call_tool("quote_video", ARGS))
        return await client.call_tool("generate_video", {**ARGS, "confirm": True})

    result = with_server(caller, stack, scenario)
    assert result.is_error and "Insufficient credits" in _text(result)


def test_wait_returns_early_and_cancel_refunds(caller: Caller, stack: str) -> None:
    """wait_for_video returns before the job ends when its timeout passes; cancel_video then refunds the job."""
    caller.grant(10)
    args = {**ARGS, "settings": {**FAST, "duration": 4}}

    async def scenario(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
        _data(await client.call_tool("quote_video", args))
        created = _data(await client.call_tool("generate_video", {**args, "confirm": True}))
        waited = _data(
            await client.call_tool("wait_for_video", {"job_id": created["job_id"], "timeout_seconds": 1})
        )
        return waited, _data(await client.call_tool("cancel_video", {"job_id": created["job_id"]}))

    waited, canceled = with_server(caller, stack, scenario)
    assert waited["done"] is False and waited["status"] in ("pending", "processing")
    assert canceled["status"] == "canceled" and caller.balance() == 10


def test_an_image_is_quoted_confirmed_and_made(caller: Caller, stack: str) -> None:
    """quote_image prices an image on the model this keyless stack can run (local-card, with no model named);
    generate_image refuses without confirm, then makes it once (a retry with the same arguments is the same job);
    wait_for_video returns its image id."""
    caller.grant(5)
    args = {"prompt": "A harbour at dawn", "settings": {"num_images": 2}}

    async def scenario(
        client: Client,
    ) -> tuple[dict[str, Any], CallToolResult, dict[str, Any], dict[str, Any]]:
        quote = _data(await client.call_tool("quote_image", args))
        refused = await client.call_tool("generate_image", args)
        created = _data(await client.call_tool("generate_image", {**args, "confirm": True}))
        again = _data(await client.call_tool("generate_image", {**args, "confirm": True}))
        assert again["job_id"] == created["job_id"]
        done = _data(await client.call_tool("wait_for_video", {"job_id": created["job_id"]}))
        return quote, refused, created, done

    quote, refused, created, done = with_server(caller, stack, scenario)
    assert done["job_id"] == created["job_id"] and quote["credits"] == 2 and quote["balance_after"] == 3
    assert refused.is_error and "Not submitted" in _text(refused)
    assert done["status"] == "completed" and len(done["images"]) == 2 and done["model"] == "local-card"
    assert caller.balance() == 3


def test_generate_video_takes_references_and_a_prompt_alone(caller: Caller, stack: str) -> None:
    """generate_video's image may be an image id, 'video:<job id>' (its last frame) or '' (the prompt alone):
    each is quoted, confirmed and made."""
    caller.grant(20)
    fast = {"duration": 1, "resolution": "480p", "aspect_ratio": "16:9"}
    image_args = {"prompt": "A harbour at dawn", "model": "local-card"}

    async def scenario(client: Client) -> list[dict[str, Any]]:
        await client.call_tool("quote_image", image_args)
        made = _data(await client.call_tool("generate_image", {**image_args, "confirm": True}))
        card = _data(await client.call_tool("wait_for_video", {"job_id": made["job_id"]}))
        results = []
        for image in (card["images"][0]["image_id"], ""):
            args = {"image": image, "prompt": "slow zoom in", "model": "local-motion", "settings": fast}
            await client.call_tool("quote_video", args)
            job = _data(await client.call_tool("generate_video", {**args, "confirm": True}))
            results.append(_data(await client.call_tool("wait_for_video", {"job_id": job["job_id"]})))
        sequel = {
            "image": f"video:{results[0]['job_id']}",
            "prompt": "pan",
            "model": "local-motion",
            "settings": fast,
        }
        await client.call_tool("quote_video", sequel)
        job = _data(await client.call_tool("generate_video", {**sequel, "confirm": True}))
        results.append(_data(await client.call_tool("wait_for_video", {"job_id": job["job_id"]})))
        return results

    results = with_server(caller, stack, scenario)
    assert [r["status"] for r in results] == ["completed"] * 3
    assert results[1]["stage"] == "video" and len(results[1]["images"]) == 1


def test_list_jobs_finds_earlier_videos_and_images(caller: Caller, stack: str) -> None:
    """list_jobs returns the caller's jobs newest first, of both kinds or one, so an agent can pick one to reuse."""
    caller.grant(10)
    video = caller.generate(
        model_id="local-motion", prompt="zoom", image_url=caller.upload(), settings=FAST
    ).json()
    image = caller.http.post(
        "/functions/v1/generate-image",
        json={"model_id": "local-card", "prompt": "a title"},
        headers={"Idempotency-Key": "mcp-list"},
    ).json()

    async def scenario(client: Client) -> tuple[dict[str, Any], dict[str, Any], CallToolResult]:
        both = _data(await client.call_tool("list_jobs", {}))
        images = _data(await client.call_tool("list_jobs", {"kind": "image"}))
        wrong = await client.call_tool("list_jobs", {"kind": "audio"})
        return both, images, wrong

    both, images, wrong = with_server(caller, stack, scenario)
    assert [j["job_id"] for j in both["jobs"]] == [image["job_id"], video["job_id"]]
    assert [j["kind"] for j in both["jobs"]] == ["image", "video"]
    assert [j["job_id"] for j in images["jobs"]] == [image["job_id"]]
    assert wrong.is_error


def test_list_campaigns_gives_the_ids_to_bill_a_job_to(caller: Caller, stack: str) -> None:
    """list_campaigns names each active campaign with its client and budget left (archived ones on request), so
    an agent can pass its campaign_id to quote_video."""
    caller.grant(5)
    active = campaign(caller, budget=4, name="spring")
    old = campaign(caller, name="winter")
    caller.http.post("/functions/v1/update-campaign", json={"campaign_id": old["id"], "archived": True})

    async def scenario(client: Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        listed = _data(await client.call_tool("list_campaigns", {}))
        every = _data(await client.call_tool("list_campaigns", {"include_archived": True}))
        quote = _data(await client.call_tool("quote_video", {**ARGS, "campaign_id": active["id"]}))
        return listed, every, quote

    listed, every, quote = with_server(caller, stack, scenario)
    (only,) = listed["campaigns"]
    assert only["campaign_id"] == active["id"] and only["client"] == "Acme" and only["budget_remaining"] == 4
    assert {c["campaign_id"] for c in every["campaigns"]} == {active["id"], old["id"]}
    assert quote["campaign_budget_remaining"] == 4
