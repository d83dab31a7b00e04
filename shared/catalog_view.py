"""The model catalog as the API shows it, with availability decided by the providers configured here."""

from __future__ import annotations

from shared.models import ModelInfo, ModelList
from shared.providers.catalog import ModelSpec, all_models
from shared.providers.registry import unavailable_reason


def model_info(spec: ModelSpec) -> ModelInfo:
    """One catalog row for the API."""
    reason = spec.unavailable_reason if not spec.available else unavailable_reason(spec.provider)
    if not spec.available and not reason:
        reason = "switched off in the catalog"
    price = spec.price.model_dump(exclude_defaults=True)
    price["unit"] = "credits"
    price["rule"] = "ceil((base + per_second * duration) * resolution_multiplier)"
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
        price=price,
        notes=spec.notes,
    )


def model_list() -> ModelList:
    """Every model of the catalog."""
    return ModelList(models=[model_info(spec) for spec in all_models().values()])
