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

from segdoctor.registry import Registry

MODELS: Registry[Callable[..., Any]] = Registry("model", sort=True)
"""Model name -> builder (names listed alphabetically)."""


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a model builder under ``name``.

    Example:
        >>> @register_model("my_net")  # doctest: +SKIP
        ... def my_net(input_shape, **kwargs): ...
    """
    return MODELS.register(name)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return MODELS.names()


def create_model(name: str, **kwargs: Any):
    """Build a registered model by name; keyword arguments go to its builder.

    Raises:
        ConfigError: for an unknown name (the message lists the registered ones).
    """
    return MODELS.create(name, **kwargs)


# The built-in architectures register themselves with register_model, so they are imported once
# it exists (unet.py imports it from this package).
from segdoctor.models import unet  # noqa: E402, F401

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
