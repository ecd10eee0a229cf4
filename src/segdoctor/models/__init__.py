"""Model registry and the U-Net family.

Example:
    >>> from segdoctor.models import create_model, list_models
    >>> "unet" in list_models()
    True
    >>> model = create_model("unet", input_shape=(64, 64, 1), depth=2, base_filters=4)
    >>> model.output_shape
    (None, 64, 64, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segdoctor.errors import ConfigError, did_you_mean

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a model builder under ``name``."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ConfigError(
                f"A model named {name!r} is already registered", fix="pick another name."
            )
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any):
    """Build a registered model by name; keyword arguments go to its builder."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(
            f"Unknown model {name!r}",
            expected="one of " + ", ".join(sorted(_REGISTRY)),
            received=repr(name),
            fix=f"pass a registered name.{did_you_mean(name, _REGISTRY)}",
        )
    return _REGISTRY[name](**kwargs)


def _load_builtin() -> None:
    from segdoctor.models import unet  # noqa: F401  (registers "unet" and "resunet")


__all__ = ["create_model", "list_models", "register_model"]
