"""The one plotting stack: headless matplotlib figures, without pyplot's global state.

Every figure segdoctor draws (the run report's curves and overlays, the doctor's evidence plots)
is a :class:`matplotlib.figure.Figure` made by :func:`new_figure`, with its own non-interactive
Agg canvas attached. Nothing here calls ``matplotlib.use`` or ``pyplot``: importing segdoctor never
changes the backend of a user's notebook or script, and figures are never kept in a global
registry (no ``plt.close`` needed, no leak).

Example:
    >>> fig, ax = new_figure(figsize=(2, 2))
    >>> _ = ax.plot([0, 1], [0, 1])
    >>> png_bytes(fig)[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from segdoctor._io import atomic_write_bytes

__all__ = ["integer_ticks", "new_figure", "png_bytes", "save_png"]


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float] = (6.4, 4.8),
    dpi: float | None = None,
    squeeze: bool = True,
) -> tuple[Any, Any]:
    """A figure on its own Agg canvas and its axes, as ``pyplot.subplots`` returns them.

    Args:
        nrows, ncols: the grid of axes.
        figsize: inches (width, height).
        dpi: the figure's resolution (matplotlib's default when None).
        squeeze: as in ``pyplot.subplots``: one axes object for a 1x1 grid, a 1-D array for one
            row or column; False always gives a 2-D array.

    Returns:
        ``(figure, axes)``.

    Example:
        >>> fig, axes = new_figure(2, 3, squeeze=False)
        >>> axes.shape
        (2, 3)
    """
    # matplotlib is heavy (~0.3 s to import) and only needed when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - heavy, see above
    from matplotlib.figure import Figure  # noqa: PLC0415 - heavy, see above

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)  # this figure renders with Agg; the global backend is left alone
    axes = fig.subplots(nrows, ncols, squeeze=squeeze)
    return fig, axes


def integer_ticks(axis: Any) -> None:
    """Only whole numbers on ``axis`` (an epoch axis), e.g. ``integer_ticks(ax.xaxis)``."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 - heavy; only when plotting

    axis.set_major_locator(MaxNLocator(integer=True))


def png_bytes(
    fig: Any, *, dpi: float | None = None, tight: bool = False, tight_layout: bool = False
) -> bytes:
    """The figure as PNG bytes.

    Args:
        fig: a figure from :func:`new_figure`.
        dpi: resolution of the PNG (the figure's own when None).
        tight: crop the PNG to the drawn area (``bbox_inches="tight"``).
        tight_layout: lay the axes out again before drawing (labels inside the figure).

    Example:
        >>> png_bytes(new_figure(figsize=(1, 1))[0], dpi=20)[:4] == b"\\x89PNG"
        True
    """
    if tight_layout:
        fig.tight_layout()
    buffer = io.BytesIO()
    options: dict[str, Any] = {"format": "png"}
    if dpi is not None:
        options["dpi"] = dpi
    if tight:
        options["bbox_inches"] = "tight"
    fig.savefig(buffer, **options)
    return buffer.getvalue()


def save_png(fig: Any, path: str | Path, *, dpi: float = 100, tight: bool = True) -> Path:
    """Write the figure to ``path`` as PNG, atomically; returns the path.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "f.png"
        >>> save_png(new_figure(figsize=(1, 1))[0], out).read_bytes()[:4] == b"\\x89PNG"
        True
    """
    return atomic_write_bytes(path, png_bytes(fig, dpi=dpi, tight=tight))
