"""Provider name -> provider instance: the one place that knows which providers exist."""

from __future__ import annotations

from shared import errors
from shared.providers.base import Provider

_providers: dict[str, Provider] = {}


def get_provider(name: str) -> Provider:
    """The provider registered under ``name``."""
    if name not in _providers:
        _register_defaults()
    try:
        return _providers[name]
    except KeyError as exc:
        raise errors.ModelUnavailable(f"The provider {name!r} is not installed in this deployment.") from exc


def find_provider(name: str) -> Provider | None:
    """The provider registered under ``name``, or None when this deployment has none of that name."""
    _register_defaults()
    return _providers.get(name)


def all_providers() -> list[Provider]:
    """Every provider installed in this deployment."""
    _register_defaults()
    return list(_providers.values())


def unavailable_reason(name: str) -> str | None:
    """Why a provider cannot take jobs now, or None."""
    try:
        return get_provider(name).unavailable_reason()
    except errors.ModelUnavailable as exc:
        return exc.message


def _register_defaults() -> None:
    from shared.providers.fal.provider import get_fal
    from shared.providers.local.engine_provider import get_local_engine
    from shared.providers.replicate.provider import get_replicate

    _providers.setdefault("local", get_local_engine())
    _providers.setdefault("fal", get_fal())
    _providers.setdefault("replicate", get_replicate())
