"""Named factories: one small registry shape for the losses and the models.

A :class:`Registry` maps names to factories (classes or functions), refuses a name registered
twice, and answers an unknown name with a :class:`~segdoctor.errors.ConfigError` that lists the
valid names and suggests the closest one. ``segdoctor.losses`` (``register_loss``, ``list_losses``,
``create_loss``) and ``segdoctor.models`` (``register_model``, ``list_models``, ``create_model``)
are thin wrappers around one each.

Example:
    >>> shapes = Registry("shape")
    >>> @shapes.register("square")
    ... def square(side=1):
    ...     return side * side
    >>> shapes.create("square", side=3), shapes.names()
    (9, ['square'])
    >>> shapes.create("sqare")
    Traceback (most recent call last):
    ...
    segdoctor.errors.ConfigError: Unknown shape 'sqare'...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from segdoctor.errors import ConfigError, did_you_mean

__all__ = ["Registry"]

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Names -> factories of one kind of object.

    Args:
        kind: what the names name, for messages ("loss", "model").
        sort: list names alphabetically; otherwise in registration order (the first is the
            default of whoever offers the choice).
    """

    def __init__(self, kind: str, *, sort: bool = False) -> None:
        self.kind = kind
        self.sort = sort
        self._factories: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that registers a factory (a class or a function) under ``name``.

        Raises:
            ConfigError: when ``name`` is taken.
        """

        def decorate(factory: F) -> F:
            if name in self._factories:
                raise ConfigError(
                    f"A {self.kind} named {name!r} is already registered",
                    fix="pick another name.",
                )
            self._factories[name] = factory
            return factory

        return decorate

    def names(self) -> list[str]:
        """The registered names (sorted, or in registration order)."""
        return sorted(self._factories) if self.sort else list(self._factories)

    def get(self, name: str) -> F:
        """The factory registered under ``name``.

        Raises:
            ConfigError: for an unknown name, listing the valid ones and the closest match.
        """
        if name not in self._factories:
            raise ConfigError(
                f"Unknown {self.kind} {name!r}",
                expected="one of " + ", ".join(self.names()),
                received=repr(name),
                fix=f"pass a registered name.{did_you_mean(name, self._factories)}",
            )
        return self._factories[name]

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Call the factory registered under ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
