"""Which provider serves a model now: the first usable route in the model's order of preference.

A route is skipped when the catalog switched it off, its provider is not configured here (no credentials), its
provider's circuit breaker is open (calls are failing right now), or it cannot make the requested settings (an
extra option it has no field for, a combination it refuses). The route is chosen before anything is charged and
recorded on the job; a job is submitted to that route only, so it never runs at two providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared import errors
from shared.http import breaker
from shared.providers.catalog import ModelSpec, Route
from shared.providers.registry import unavailable_reason


def route_problem(route: Route) -> str | None:
    """Why this route cannot take jobs now (None when it can), whatever the settings."""
    if not route.available:
        return route.unavailable_reason or "switched off in the catalog"
    reason = unavailable_reason(route.provider)
    if reason:
        return reason
    if breaker(route.provider).is_open:
        return f"{route.provider} is failing; calls are paused"
    return None


@dataclass(frozen=True)
class Routing:
    """The route chosen for a request, and why each earlier route was passed over."""

    route: Route
    skipped: dict[str, str]


def choose(spec: ModelSpec, settings: dict[str, Any]) -> Routing:
    """The first route of ``spec`` that can make a video with these resolved settings now."""
    skipped: dict[str, str] = {}
    paused = False  # some route would do but for an open breaker: try again shortly (503), not a bad request
    for route in spec.routes:
        problem = route_problem(route)
        if problem is None and not route.serves(settings):
            problem = "does not support these settings"
        if problem is None:
            return Routing(route, skipped)
        skipped[route.key] = problem
        paused = paused or (breaker(route.provider).is_open and route.serves(settings))
    reasons = "; ".join(f"{key}: {why}" for key, why in skipped.items())
    if paused:
        raise errors.ProviderUnavailable(f"{spec.slug} cannot be started right now: {reasons}")
    raise errors.ModelUnavailable(f"{spec.slug} is not available: {reasons}", model=spec.slug)


def text_only_route(spec: ModelSpec, settings: dict[str, Any]) -> Route | None:
    """The first route of ``spec`` that makes a video from the prompt alone (catalog ``text_only``) and can take
    these resolved settings now; None when none can (the start image is then made first)."""
    for route in spec.routes:
        if route.text_only and route_problem(route) is None and route.serves(settings):
            return route
    return None


def current_route(spec: ModelSpec) -> Route | None:
    """The route a request with the model's default settings would take now (None when none can)."""
    for route in spec.routes:
        if route_problem(route) is None:
            return route
    return None
