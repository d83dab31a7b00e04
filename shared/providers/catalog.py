"""The model catalog: every model is a ``ModelSpec`` row of data in ``models.json``.

A spec says which provider runs the model, which settings it accepts (resolution, aspect ratio, duration) and
how they are written into the provider's input, and how it is priced in credits. Adding a model is adding a
row to ``models.json``; no code branches on a model's slug.
"""

from __future__ import annotations

import json
import math
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import errors

_CATALOG = Path(__file__).with_name("models.json")
_NAMESPACE = uuid.UUID("6f1c7c62-7a7e-4b55-9f3e-8d0a2f3e5b10")


class FieldMap(BaseModel):
    """How one setting is written into the provider's input."""

    model_config = ConfigDict(extra="forbid")
    field: str
    type: Literal["int", "string", "string_s"] = "int"  # "string_s": 5 -> "5s"


class PriceRule(BaseModel):
    """Credits charged: ``base + per_second * duration``, scaled by a resolution multiplier, rounded up."""

    model_config = ConfigDict(extra="forbid")
    base: float = 0
    per_second: float = 0
    resolution_multiplier: dict[str, float] = Field(default_factory=dict)
    provider_usd: str | None = None  # the provider's published price, for reference

    def credits(self, duration: int, resolution: str) -> int:
        """The credits one video with these settings costs (at least 1)."""
        raw = (self.base + self.per_second * duration) * self.resolution_multiplier.get(resolution, 1.0)
        return max(1, math.ceil(round(raw, 6)))


class ModelSpec(BaseModel):
    """One model of the catalog."""

    model_config = ConfigDict(extra="forbid")
    slug: str
    name: str
    provider: str
    endpoint: str
    kind: Literal["image-to-video", "text-to-video"] = "image-to-video"
    requires_image: bool = True
    available: bool = True
    unavailable_reason: str | None = None
    resolutions: list[str]
    aspect_ratios: list[str]
    durations: list[int]
    defaults: dict[str, Any]
    inputs: dict[str, FieldMap] = Field(default_factory=dict)
    extra_options: dict[str, str] = Field(default_factory=dict)  # option name -> provider field
    output_video: str = "video.url"
    price: PriceRule
    notes: str | None = None

    @property
    def id(self) -> uuid.UUID:
        """A stable id derived from the slug (the same in every deployment)."""
        return uuid.uuid5(_NAMESPACE, self.slug)

    def capabilities(self) -> dict[str, Any]:
        """What the API shows as the model's allowed settings."""
        return {
            "resolutions": self.resolutions,
            "aspect_ratios": self.aspect_ratios,
            "durations": self.durations,
            "defaults": self.defaults,
            "extra_options": sorted(self.extra_options),
        }


@lru_cache(maxsize=1)
def all_models() -> dict[str, ModelSpec]:
    """Every model of the catalog by slug."""
    rows = json.loads(_CATALOG.read_text())
    specs = [ModelSpec.model_validate(row) for row in rows]
    return {spec.slug: spec for spec in specs}


def find_model(ref: str) -> ModelSpec:
    """The model with this slug or id, or ``UnknownModel`` listing the valid slugs."""
    models = all_models()
    if ref in models:
        return models[ref]
    for spec in models.values():
        if str(spec.id) == ref.lower():
            return spec
    raise errors.UnknownModel(
        f"No model is called {ref!r}.", field="model_id", value=ref, allowed=sorted(models)
    )
