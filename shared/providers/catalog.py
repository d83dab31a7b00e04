"""The model catalog: every model is a ``ModelSpec`` row of data in ``models.json``.

A spec says which settings a model accepts (resolution, aspect ratio, duration) and lists its routes in order of
preference: each route names a provider and its endpoint, says how the settings are written into that provider's
input, and how a video is priced there. Adding a model, or another provider for a model, is adding data to
``models.json``; no code branches on a model's slug or a provider's name.
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
    """How one of our settings is written into the provider's input.

    ``values`` translates our vocabulary to the provider's (``720p`` -> ``768P``); ``omit`` lists our values for
    which the field is left out (the provider's own default applies); ``type`` says how a duration is written:
    ``int`` 5, ``string`` "5", ``string_s`` "5s", ``frames`` ``duration * fps + frames_offset`` frames.
    """

    model_config = ConfigDict(extra="forbid")
    field: str
    type: Literal["int", "string", "string_s", "frames", "raw"] = "raw"
    values: dict[str, Any] = Field(default_factory=dict)
    omit: list[Any] = Field(default_factory=list)
    fps: int = 16
    frames_offset: int = 1
    accepts: Literal["string", "int", "number", "bool", "any"] = (
        "any"  # for extra options: the value's JSON type
    )
    maximum: float | None = None
    minimum: float | None = None

    def check(self, name: str, value: Any) -> None:
        """Refuse an extra-option value of the wrong type or range, naming the setting."""
        kinds: dict[str, tuple[type, ...]] = {
            "string": (str,),
            "int": (int,),
            "number": (int, float),
            "bool": (bool,),
            "any": (object,),
        }
        ok = isinstance(value, kinds[self.accepts]) and not (
            self.accepts in ("int", "number") and isinstance(value, bool)
        )
        if ok and isinstance(value, int | float) and not isinstance(value, bool):
            ok = (self.minimum is None or value >= self.minimum) and (
                self.maximum is None or value <= self.maximum
            )
        if ok and isinstance(value, str):
            ok = len(value) <= 2000
        if not ok:
            limits = "" if self.minimum is None else f" between {self.minimum} and {self.maximum}"
            raise errors.InvalidField(
                f"settings.{name}", f"settings.{name} must be a {self.accepts}{limits}."
            )

    def write(self, value: Any, into: dict[str, Any]) -> None:
        """Put ``value`` into the provider input ``into`` (or leave the field out)."""
        if value in self.omit:
            return
        if str(value) in self.values:
            into[self.field] = self.values[str(value)]
        elif self.type == "int":
            into[self.field] = int(value)
        elif self.type == "string":
            into[self.field] = str(value)
        elif self.type == "string_s":
            into[self.field] = f"{value}s"
        elif self.type == "frames":
            into[self.field] = int(value) * self.fps + self.frames_offset
        else:
            into[self.field] = value


class PriceRule(BaseModel):
    """What one video costs.

    ``unit: credits`` prices directly in credits; ``unit: usd`` states the provider's published price, turned into
    credits with CREDITS_PER_USD and CREDIT_MARGIN. Cost = (base + per_second * max(0, duration - included_seconds))
    x resolution multiplier x option multipliers, rounded up, at least 1 credit.
    """

    model_config = ConfigDict(extra="forbid")
    unit: Literal["credits", "usd"] = "credits"
    base: float = 0
    per_second: float = 0
    per_image: float = 0  # image models: each image made (num_images)
    included_seconds: int = 0
    resolution_multiplier: dict[str, float] = Field(default_factory=dict)
    option_multiplier: dict[str, dict[str, float]] = Field(default_factory=dict)

    def credits(
        self, settings: dict[str, Any], *, credits_per_usd: float = 100.0, margin: float = 1.0
    ) -> int:
        """The credits one video with these (resolved) settings costs."""
        duration = int(settings.get("duration") or 0)
        raw = self.base + self.per_second * max(0, duration - self.included_seconds)
        raw += self.per_image * int(settings.get("num_images") or 0)
        raw *= self.resolution_multiplier.get(str(settings.get("resolution")), 1.0)
        for option, table in self.option_multiplier.items():
            if option in settings:
                raw *= table.get(str(settings[option]).lower(), 1.0)
        if self.unit == "usd":
            raw *= credits_per_usd * margin
        return max(1, math.ceil(round(raw, 6)))


class Route(BaseModel):
    """One way to run a model: a provider's endpoint, how our settings are written into its input, and its price.

    A model may have several routes (the same model at fal and at Replicate); each writes the input in its own
    provider's vocabulary and has its own price.
    """

    model_config = ConfigDict(extra="forbid")
    provider: str
    endpoint: str
    edit_endpoint: str | None = None  # image models: the endpoint that takes input images, when it differs
    available: bool = True
    unavailable_reason: str | None = None
    inputs: dict[str, FieldMap] = Field(
        default_factory=dict
    )  # prompt, image, resolution, aspect_ratio, duration
    extra_options: dict[str, FieldMap] = Field(default_factory=dict)  # option name -> provider field
    fixed_input: dict[str, Any] = Field(default_factory=dict)
    output_video: str = "video.url"  # a dotted path into the output; "" when the output is the URL itself
    output_images: str = "images.*.url"  # image models: the path of each image URL ("*": every list item)
    unsupported: list[dict[str, Any]] = Field(default_factory=list)  # settings combinations it cannot make
    # Video routes whose endpoint also makes a video from the prompt alone (its image input is optional): a
    # prompt-only request is sent there directly instead of making a start image first.
    text_only: bool = False
    price: PriceRule
    notes: str | None = None

    @property
    def key(self) -> str:
        """``provider:endpoint``, the route's name in the API."""
        return f"{self.provider}:{self.endpoint}"

    def endpoint_for(self, input_images: Any) -> str:
        """The endpoint of a job: the edit endpoint when input images are given and the route has one."""
        return self.edit_endpoint if input_images and self.edit_endpoint else self.endpoint

    def provider_input(
        self,
        prompt: str,
        image_url: str | None,
        settings: dict[str, Any],
        input_images: Any = (),
    ) -> dict[str, Any]:
        """The provider's input JSON for one job, built from the data above (no per-model code)."""
        body: dict[str, Any] = dict(self.fixed_input)
        FieldMap.model_validate(self.inputs.get("prompt") or {"field": "prompt"}).write(prompt, body)
        if image_url:
            (self.inputs.get("image") or FieldMap(field="image_url")).write(image_url, body)
        if input_images:
            (self.inputs.get("images") or FieldMap(field="image_urls")).write(list(input_images), body)
        for name in ("resolution", "aspect_ratio", "duration", "output_format", "num_images"):
            if name in self.inputs and name in settings:
                self.inputs[name].write(settings[name], body)
        for name, mapping in self.extra_options.items():
            if name in settings:
                mapping.write(settings[name], body)
        return body

    def output_url(self, output: Any) -> str | None:
        """The video URL inside the provider's output, following ``output_video`` (e.g. ``video.url``)."""
        node = output
        for part in self.output_video.split(".") if self.output_video else ():
            if isinstance(node, list):
                node = node[int(part)] if part.isdigit() and int(part) < len(node) else None
            elif isinstance(node, dict):
                node = node.get(part)
            else:
                return None
        return node if isinstance(node, str) and node else None

    def output_urls(self, output: Any) -> list[str]:
        """The image URLs inside the provider's output, following ``output_images`` (``*`` takes every item)."""
        nodes = [output]
        for part in self.output_images.split(".") if self.output_images else ():
            found: list[Any] = []
            for node in nodes:
                if part == "*" and isinstance(node, list):
                    found.extend(node)
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    found.append(node[int(part)])
                elif isinstance(node, dict) and part in node:
                    found.append(node[part])
            nodes = found
        flat = [n for node in nodes for n in (node if isinstance(node, list) else [node])]
        return [n for n in flat if isinstance(n, str) and n]

    def serves(
        self,
        settings: dict[str, Any],
        standard: Any = ("resolution", "aspect_ratio", "duration", "output_format", "num_images"),
    ) -> bool:
        """True when this route can make a video with these resolved settings: it writes every extra option
        given and no ``unsupported`` combination matches."""
        if any(name not in self.extra_options for name in settings if name not in standard):
            return False
        return not any(all(settings.get(k) == v for k, v in combo.items()) for combo in self.unsupported)


class ModelSpec(BaseModel):
    """One model of the catalog: what it makes, the settings it allows, and its routes in order of preference."""

    model_config = ConfigDict(extra="forbid")
    slug: str
    name: str
    kind: Literal["image-to-video", "text-to-video", "text-to-image"] = "image-to-video"
    requires_image: bool = True
    available: bool = True
    unavailable_reason: str | None = None
    resolutions: list[str]
    aspect_ratios: list[str]
    durations: list[int]
    output_formats: list[str] = Field(default_factory=list)  # image models
    max_images: int = 0  # image models: the most images one request may ask for (num_images)
    max_input_images: int = 0  # image models: the most reference images an edit takes
    defaults: dict[str, Any]
    routes: list[Route] = Field(min_length=1)
    image_model: str = (
        "nano-banana"  # video models: what makes the start image of a video from a prompt alone
    )
    notes: str | None = None

    @property
    def id(self) -> uuid.UUID:
        """A stable id derived from the slug (the same in every deployment)."""
        return uuid.uuid5(_NAMESPACE, self.slug)

    @property
    def makes_images(self) -> bool:
        """True for an image model (its jobs make images, not a video)."""
        return self.kind == "text-to-image"

    @property
    def extra_options(self) -> dict[str, FieldMap]:
        """Every extra option some route of the model accepts (the first route's mapping checks its value)."""
        options: dict[str, FieldMap] = {}
        for route in self.routes:
            for name, mapping in route.extra_options.items():
                options.setdefault(name, mapping)
        return options

    def route(self, provider: str, endpoint: str | None = None) -> Route:
        """The route of this model at ``provider`` (and ``endpoint``, when a provider has several)."""
        for route in self.routes:
            if route.provider == provider and (endpoint is None or route.endpoint == endpoint):
                return route
        for route in self.routes:  # the endpoint changed in the catalog since the job was made
            if route.provider == provider:
                return route
        raise errors.ModelUnavailable(f"{self.slug} has no route at {provider}.", model=self.slug)

    def capabilities(self) -> dict[str, Any]:
        """What the API shows as the model's allowed settings."""
        return {
            "resolutions": self.resolutions,
            "aspect_ratios": self.aspect_ratios,
            "durations": self.durations,
            "output_formats": self.output_formats,
            "max_images": self.max_images,
            "max_input_images": self.max_input_images,
            "defaults": self.defaults,
            "extra_options": sorted(self.extra_options),
            "routes": [route.key for route in self.routes],
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
