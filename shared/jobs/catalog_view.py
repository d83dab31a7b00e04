"""The model catalog as the API shows it: each model's routes, which one would be used now, and the credits
charged at each, computed by the code that charges."""

from __future__ import annotations

import itertools
from typing import Any

from shared.jobs import routing
from shared.providers.catalog import ModelSpec, Route, all_models
from shared.schemas import ModelInfo, ModelList, RouteInfo


def model_info(spec: ModelSpec) -> ModelInfo:
    """One catalog row for the API."""
    current = routing.current_route(spec)
    shown = current or spec.routes[0]
    reason = None
    if not spec.available:
        reason = spec.unavailable_reason or "switched off in the catalog"
    elif current is None:
        reason = "; ".join(f"{r.key}: {routing.route_problem(r)}" for r in spec.routes)
    return ModelInfo(
        id=spec.id,
        slug=spec.slug,
        name=spec.name,
        provider=shown.provider,
        routes=[route_info(spec, route) for route in spec.routes],
        kind=spec.kind,
        available=reason is None,
        unavailable_reason=reason,
        requires_image=spec.requires_image,
        resolutions=spec.resolutions,
        aspect_ratios=spec.aspect_ratios,
        durations=spec.durations,
        output_formats=spec.output_formats,
        max_images=spec.max_images,
        max_input_images=spec.max_input_images,
        defaults=spec.defaults,
        extra_options=sorted(spec.extra_options),
        price=price_table(spec, shown),
        notes=spec.notes,
    )


def route_info(spec: ModelSpec, route: Route) -> RouteInfo:
    """One route of a model for the API."""
    problem = routing.route_problem(route)
    return RouteInfo(
        provider=route.provider,
        endpoint=route.endpoint,
        available=problem is None,
        unavailable_reason=problem,
        extra_options=sorted(route.extra_options),
        text_only=route.text_only,
        price=price_table(spec, route),
        notes=route.notes,
    )


def price_table(spec: ModelSpec, route: Route) -> dict[str, Any]:
    """The credits each combination of priced settings costs at one route, computed by the code that charges.

    Every resolution x duration (images: every image count) the route can make is listed with the other settings
    at their defaults; an option
    that changes the price (e.g. ``generate_audio`` on Veo) adds rows for each of its priced values.
    """
    from shared.jobs.service import price, resolve_settings

    option_values: list[list[tuple[str, Any] | None]] = [
        [None, *((name, _option_value(value)) for value in table)]
        for name, table in route.price.option_multiplier.items()
    ]
    rows: list[dict[str, Any]] = []
    for base in _priced_settings(spec):
        for options in itertools.product(*option_values):
            chosen: dict[str, Any] = dict(base)
            chosen.update(dict(o for o in options if o is not None))
            resolved = resolve_settings(spec, chosen)
            if route.serves(resolved):
                rows.append({**chosen, "credits": price(route, resolved)})
    amounts = [int(row["credits"]) for row in rows]
    return {
        "unit": "credits",
        "min": min(amounts) if amounts else None,
        "max": max(amounts) if amounts else None,
        "by_settings": rows,
    }


def _priced_settings(spec: ModelSpec) -> list[dict[str, Any]]:
    """The settings a price depends on, every combination: images made (image models), or resolution x
    duration (video models)."""
    if spec.makes_images:
        return [{"num_images": n} for n in range(1, spec.max_images + 1)]
    return [{"resolution": r, "duration": d} for r, d in itertools.product(spec.resolutions, spec.durations)]


def _option_value(raw: str) -> Any:
    """An option-multiplier key ("false", "true", "pro") as the value a request sends."""
    return {"true": True, "false": False}.get(raw, raw)


def model_list() -> ModelList:
    """Every model of the catalog."""
    return ModelList(models=[model_info(spec) for spec in all_models().values()])
