"""One catalog entry (:class:`CatalogEntry`) and the rendering of its fix and title templates.

Templates are :meth:`str.format` strings over the finding's evidence and the extra values a check
passes (``{top}``, ``{monitor!r}``, ``{ratio:.0%}``); literal braces in quoted code are doubled
(``{{'images': x}}``). A placeholder without a value is an error when the finding is built, never
a half-filled text.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segdoctor.errors import ConfigError, did_you_mean

DOCS_PAGE = "docs/troubleshooting.md"


@dataclass(frozen=True)
class CatalogEntry:
    """What one finding id means, and how to fix it.

    Attributes:
        id: the stable id.
        category: ``"data"``, ``"model"``, ``"loss"``, ``"probe"`` or ``"history"``.
        severity: default severity.
        title: default one-line title.
        fix: the fix template of findings built without a variant.
        variants: fix templates of the other branches of the check, by name (e.g. ``"batch"`` for
            the training-batch form of a data finding).
        titles: title templates by variant name; a variant without one keeps ``title``. A variant
            may appear here only (a different title, the default fix).
        implemented: whether a check can emit this id in this version.

    Example:
        >>> e = CatalogEntry("x", "data", "error", "X", fix="divide by {top}")
        >>> e.render_fix({"top": 255})
        'divide by 255'
    """

    id: str
    category: str
    severity: str
    title: str
    fix: str = ""
    variants: Mapping[str, str] = field(default_factory=dict, hash=False)
    titles: Mapping[str, str] = field(default_factory=dict, hash=False)
    implemented: bool = True

    @property
    def anchor(self) -> str:
        """Link to the section of the troubleshooting guide, e.g. ``docs/troubleshooting.md#plateau``."""
        return f"{DOCS_PAGE}#{self.id}"

    def templates(self) -> dict[str | None, tuple[str, str]]:
        """``{variant: (fix template, title template)}``; ``None`` is the default branch.

        Example:
            >>> CatalogEntry("x", "data", "error", "X", fix="f", titles={"v": "X at {n}"}).templates()
            {None: ('f', 'X'), 'v': ('f', 'X at {n}')}
        """
        out: dict[str | None, tuple[str, str]] = {None: (self.fix, self.title)}
        for name in dict.fromkeys([*self.variants, *self.titles]):
            out[name] = (self.variants.get(name, self.fix), self.titles.get(name, self.title))
        return out

    def _check_variant(self, variant: str | None) -> None:
        if variant is not None and variant not in self.variants and variant not in self.titles:
            names = sorted({*self.variants, *self.titles})
            raise ConfigError(
                f"Finding {self.id!r} has no variant {variant!r}",
                expected=f"one of {names}" if names else "no variant (this id has one fix)",
                received=repr(variant),
                fix=f"name a variant of the catalog entry.{did_you_mean(variant, names)}".strip(),
            )

    def render_fix(self, values: Mapping[str, Any], variant: str | None = None) -> str:
        """The fix text of ``variant`` (default: the main branch), filled from ``values``."""
        self._check_variant(variant)
        template = self.variants.get(variant, self.fix) if variant else self.fix
        return render(template, values, what=f"fix of {self.id!r}", variant=variant)

    def render_title(self, values: Mapping[str, Any], variant: str | None = None) -> str:
        """The title of ``variant``: its template filled from ``values``, else ``title``."""
        self._check_variant(variant)
        if variant is None or variant not in self.titles:
            return self.title
        return render(self.titles[variant], values, what=f"title of {self.id!r}", variant=variant)


def placeholders(template: str) -> list[str]:
    """The field names a template reads, in order (``{a!r:>4}`` reads ``a``).

    Example:
        >>> placeholders("x = {top}; {{'literal': 1}} {ratio:.0%}")
        ['top', 'ratio']
    """
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def render(template: str, values: Mapping[str, Any], *, what: str, variant: str | None) -> str:
    """``template.format_map(values)``; a missing value raises :class:`ConfigError` naming it.

    Example:
        >>> render("use {x}", {"x": 1}, what="fix", variant=None)
        'use 1'
    """
    try:
        return template.format_map(values)
    except (KeyError, IndexError) as err:
        missing = err.args[0] if err.args else "?"
        raise ConfigError(
            f"The {what}{f' (variant {variant!r})' if variant else ''} needs the value "
            f"{missing!r}, which the check did not supply",
            expected=f"every placeholder of the template: {placeholders(template)}",
            received=f"values for {sorted(map(str, values))}",
            fix=f"pass {missing!r} in the evidence or as a keyword of make_finding.",
        ) from None
