"""The model catalog as the API shows it, with availability decided by the providers configured here."""

from __future__ import annotations

import itertools
from typing import Any

from shared.providers.catalog import ModelSpec, all_models
from shared.providers.registry import unavailable_reason
from shared.schemas import ModelInfo, ModelList


def model_info(spec: ModelSpec) -> ModelInfo:
    """One catalog row for the API."""
    reason = spec.unavailable_reason if not spec.available else unavailable_reason(spec.provider)
    if not spec.available and not reason:
        reason = "switched off in the catalog"
    return ModelInfo(
        id=spec.id,
        slug=spec.slug,
        name=spec.name,
        provider=spec.provider,
        kind=spec.kind,
        available=reason is None,
        unavailable_reason=reason,
        requires_image=spec.requires_image,
        resolutions=spec.resolutions,
        aspect_ratios=spec.aspect_ratios,
        durations=spec.durations,
        defaults=spec.defaults,
        extra_options=sorted(spec.extra_options),
        price=price_table(spec),
        notes=spec.notes,
    )


def price_table(spec: ModelSpec) -> dict[str, Any]:
    """The credits each combination of priced settings costs, computed by the code that charges.

    Every resolution x duration is listed with the other settings at their defaults; an option that changes the
    price (e.g. ``generate_audio`` on Veo) adds rows for each of its priced values.
    """
    from shared.jobs.service import price, resolve_settings

    option_values: list[list[tuple[str, Any] | None]] = [
        [None, *((name, _option_value(value)) for value in table)]
        for name, table in spec.price.option_multiplier.items()
    ]
    rows: list[dict[str, Any]] = []
    for resolution, duration in itertools.product(spec.resolutions, spec.durations):
        for options in itertools.product(*option_values):
            chosen: dict[str, Any] = {"resolution": resolution, "duration": duration}
            chosen.update(dict(o for o in options if o is not None))
            rows.append({**chosen, "credits": price(spec, resolve_settings(spec, chosen))})
    amounts = [int(row["credits"]) for row in rows]
    return {"unit": "credits", "min": min(amounts), "max": max(amounts), "by_settings": rows}


def _option_value(raw: str) -> Any:
    """An option-multiplier key ("false", "true", "pro") as the value a request sends."""
    return {"true": True, "false": False}.get(raw, raw)


def model_list() -> ModelList:
    """Every model of the catalog."""
    return ModelList(models=[model_info(spec) for spec in all_models().values()])
