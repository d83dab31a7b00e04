"""The price list-models publishes is what quote answers and what generate-video debits, for every model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared import http as _http
from tests.conftest import Caller, configured
from tests.emulators.fal import FalEmulator, JobPlan, MediaFile


@pytest.fixture(scope="module")
def fal(stack: str, mp4: bytes) -> Iterator[FalEmulator]:
    """The fal emulator with our settings pointed at it, so that fal's models are available."""
    with FalEmulator() as emu, configured(**emu.env()):
        emu.set_plan(JobPlan(video=MediaFile(data=mp4)))
        _http.breaker("fal").reset()
        yield emu


def settings_of(row: dict[str, Any]) -> dict[str, Any]:
    """The request settings a price row names."""
    return {k: v for k, v in row.items() if k != "credits"}


def test_list_models_publishes_credits_not_provider_prices(caller: Caller, fal: FalEmulator) -> None:
    """Every model's price is in credits, per setting, with its range; no provider currency leaks through."""
    for model in caller.http.get("/functions/v1/list-models").json()["models"]:
        price = model["price"]
        assert price["unit"] == "credits" and "base" not in price and "per_second" not in price
        rows = price["by_settings"]
        assert rows and all(isinstance(r["credits"], int) and r["credits"] >= 1 for r in rows)
        assert (price["min"], price["max"]) == (
            min(r["credits"] for r in rows),
            max(r["credits"] for r in rows),
        )
        if model["kind"] == "text-to-image":
            assert {r["num_images"] for r in rows} == set(range(1, model["max_images"] + 1)), model["slug"]
            continue
        assert {(r["resolution"], r["duration"]) for r in rows} == {
            (res, dur) for res in model["resolutions"] for dur in model["durations"]
        }


def test_published_price_equals_quote_and_debit_for_every_model(caller: Caller, fal: FalEmulator) -> None:
    """For every available model, each published row is what quote answers; one job per model debits the same."""
    caller.grant(100_000)
    image_url = caller.upload()
    models = caller.http.get("/functions/v1/list-models").json()["models"]
    checked = 0
    for model in models:
        if not model["available"] or model["kind"] == "text-to-image":
            continue  # image models: tests/test_images.py
        for row in model["price"]["by_settings"]:
            body = {"model_id": model["slug"], "prompt": "a quiet harbour", "image_url": image_url}
            body["settings"] = settings_of(row)
            quoted = caller.http.post("/functions/v1/quote", json=body)
            assert quoted.status_code == 200, (model["slug"], row, quoted.text)
            assert quoted.json()["credits"] == row["credits"], (model["slug"], row)
        row = max(model["price"]["by_settings"], key=lambda r: r["credits"])
        before = caller.balance()
        created = caller.generate(
            model_id=model["slug"], prompt="a quiet harbour", image_url=image_url, settings=settings_of(row)
        )
        assert created.status_code == 202, (model["slug"], created.text)
        assert created.json()["credits_used"] == row["credits"]
        assert caller.balance() == before - row["credits"]
        checked += 1
    assert checked >= 10, "the local engine and the fal models are all priced"
