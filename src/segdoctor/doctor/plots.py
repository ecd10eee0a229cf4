"""Small figures that prove a finding, rendered to PNG bytes (headless, Agg).

Drawn with :mod:`segdoctor.plotting`, the plotting stack the run report uses too. Every function
returns PNG bytes, so reports embed them as base64 and never touch global pyplot state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from segdoctor.plotting import new_figure, png_bytes


def _figure(width: float = 5.0, height: float = 3.0):
    return new_figure(figsize=(width, height), dpi=80)


def _png(fig) -> bytes:
    return png_bytes(fig, tight_layout=True)


def curves_png(
    history: Mapping[str, Sequence[float]], keys: Sequence[str], title: str = ""
) -> bytes:
    """Line plot of the named history curves against the epoch.

    Example:
        >>> curves_png({"loss": [1.0, 0.5]}, ["loss"])[:4] == b"\\x89PNG"
        True
    """
    fig, ax = _figure()
    for key in keys:
        if key in history:
            values = np.asarray(history[key], dtype=float)
            ax.plot(np.arange(1, len(values) + 1), values, label=key)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _png(fig)


def histogram_png(values: Sequence[float], counts: Sequence[float], title: str = "") -> bytes:
    """Bar chart of value counts (e.g. the distinct mask values found on disk)."""
    fig, ax = _figure()
    labels = [str(v) for v in values]
    ax.bar(range(len(labels)), counts)
    ax.set_xticks(range(len(labels)), labels, rotation=45, fontsize=7)
    ax.set_yscale("log")
    ax.set_title(title)
    return _png(fig)


def overlay_png(image: np.ndarray, mask: np.ndarray, title: str = "") -> bytes:
    """The image in gray with the mask outline in red.

    Args:
        image: (H, W) or (H, W, C) array.
        mask: (H, W) array; nonzero is foreground.
    """
    fig, ax = _figure(4.0, 4.0)
    gray = image.astype(float)
    if gray.ndim == 3:
        gray = gray.mean(axis=-1)  # (H, W)
    ax.imshow(gray, cmap="gray")
    ax.contour((np.asarray(mask) > 0).astype(float), levels=[0.5], colors="red", linewidths=0.8)
    ax.set_axis_off()
    ax.set_title(title)
    return _png(fig)
