"""Errors a user can cause, with a message that says what happened, what was expected and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SegdoctorError(Exception):
    """Base class of every error segdoctor raises on purpose.

    The message is built from parts so that each error reads the same way:
    what happened, what was expected, what was received, and how to fix it.
    """

    def __init__(
        self,
        what: str,
        *,
        expected: str | None = None,
        received: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.expected = expected
        self.received = received
        self.fix = fix
        super().__init__(self._format())

    def _format(self) -> str:
        parts = [self.what.rstrip(".") + "."]
        if self.expected:
            parts.append(f"Expected: {self.expected}.")
        if self.received:
            parts.append(f"Received: {self.received}.")
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return " ".join(parts)


class ConfigError(SegdoctorError, ValueError):
    """An argument or configuration value is invalid."""


class DataError(SegdoctorError, ValueError):
    """A data file or folder cannot be used as given."""


class ModelLoadError(SegdoctorError, ValueError):
    """A model file cannot be loaded (missing, corrupt, or needs unsafe deserialization)."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    matches = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f' Did you mean "{matches[0]}"?' if matches else ""


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Validate that ``value`` is one of ``choices``; raise ConfigError with a suggestion otherwise.

    Example:
        >>> check_choice("mode", "binary", ["binary", "multiclass"])
        'binary'
    """
    options = list(choices)
    if value not in options:
        raise ConfigError(
            f"Unknown {name} {value!r}",
            expected="one of " + ", ".join(repr(o) for o in options),
            received=repr(value),
            fix=f"pass one of the expected values.{did_you_mean(str(value), options)}".strip(),
        )
    return str(value)
