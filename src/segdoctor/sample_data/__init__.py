"""Data bundled with segdoctor (see each folder's ATTRIBUTION.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from segdoctor.errors import DataError


def sample_path(name: str = "nuclei") -> Path:
    """Path of a bundled sample dataset (a folder with ``images/`` and ``masks/``).

    Example:
        >>> (sample_path() / "images").is_dir()
        True
    """
    path = Path(str(resources.files("segdoctor.sample_data") / name))
    if not path.is_dir():
        raise DataError(
            f"The bundled sample {name!r} is missing from the installed package",
            expected="a folder with images/ and masks/ inside segdoctor/sample_data",
            fix="reinstall segdoctor (`pip install --force-reinstall segdoctor`).",
        )
    return path
