"""The loss registry: the names ``train.loss`` accepts (the same shape as the model registry).

Example:
    >>> "log_cosh_dice" in list_losses()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from segdoctor.losses.classes import (
    DiceCELoss,
    DiceLoss,
    FocalTverskyLoss,
    GeneralizedDiceLoss,
    LogCoshDiceLoss,
    TverskyLoss,
)
from segdoctor.registry import Registry

__all__ = ["LOSSES", "create_loss", "list_losses", "register_loss"]

LOSSES: Registry[Callable[..., keras.losses.Loss]] = Registry("loss")
"""Loss name -> class (or function returning a ``keras.losses.Loss``), in registration order."""


def register_loss(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that registers a loss class (or a function returning a Loss) under ``name``.

    Example:
        >>> @register_loss("my_dice")  # doctest: +SKIP
        ... class MyDice(DiceLoss): ...
    """
    return LOSSES.register(name)


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss` (and ``train.loss``), the recipe's default first.

    Example:
        >>> list_losses()[:2]
        ['dice_ce', 'dice']
    """
    return LOSSES.names()


def create_loss(name: str, **kwargs: Any) -> keras.losses.Loss:
    """Build a registered loss by name; keyword arguments go to its class.

    Raises:
        ConfigError: for an unknown name (the message lists the registered ones).

    Example:
        >>> type(create_loss("tversky", mode="binary")).__name__
        'TverskyLoss'
    """
    return LOSSES.create(name, **kwargs)


# The built-in losses, in the order the configuration lists them (the recipe's default first).
for _name, _cls in (
    ("dice_ce", DiceCELoss),
    ("dice", DiceLoss),
    ("tversky", TverskyLoss),
    ("focal_tversky", FocalTverskyLoss),
    ("generalized_dice", GeneralizedDiceLoss),
    ("log_cosh_dice", LogCoshDiceLoss),
):
    register_loss(_name)(_cls)
del _name, _cls
