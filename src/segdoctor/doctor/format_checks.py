"""Format checks over the image files: bit depth and used range, channel modes, intensity outliers.

segdoctor's own loader copes with most of what these checks find (it reads every file in its
native depth, drops alpha, converts gray/RGB to one channel count and z-scores each image on its
own), but a hand-written pipeline usually does not: it divides by 255 or 65535, stacks arrays of
different shapes, or fits one mean/std to files that come from different sources. Each finding says
both: what segdoctor does with the files and what a hand-written pipeline must do.

The checks need a few numbers per image only (:class:`ImageFormat`), computed by
:func:`image_format` in the doctor's single pass over the data (``data_checks``), so the dataset
is read once and memory does not grow with the number of images.

Thresholds (documented per id in ``docs/troubleshooting.md``):

* ``image-range-narrow``: a 16-bit file whose values span (max - min) at most :data:`NARROW_MAX`
  (4095: 12 bits of 16 or fewer).
* ``image-mixed-bit-depth``: files of more than one sample type (uint8 / uint16 / float32).
* ``image-mixed-channels``: more than one channel mode (gray, gray+alpha, RGB, RGBA); a warning when
  some files carry an alpha channel and others do not, an info for gray mixed with RGB only.
* ``image-alpha``: an alpha channel that is not constant (warning), or every file RGBA/gray+alpha
  with a constant alpha (info).
* ``image-intensity-outlier``: within files of one type and channel count (at least
  :data:`OUTLIER_MIN_FILES`), a robust z-score above :data:`OUTLIER_Z` on log(1 + median) or
  log(1 + IQR), for at most :data:`OUTLIER_MAX_SHARE` of the files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segdoctor.data.io import PIL_EXTENSIONS, TIFF_EXTENSIONS, file_extension
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

NARROW_MAX = 4095
"""A 16-bit file whose values span at most this (max - min; 12 of 16 bits) draws
``image-range-narrow``: 12-bit data in 16-bit files, 0..40, or 30000..30040."""
OUTLIER_Z = 8.0
"""Robust z-score (median/MAD of log(1 + value)) above which a file is an intensity outlier.
The largest on the healthy sets: 6.1 (dsb2018-nuclei: its 4 gray brightfield images among
fluorescence), 6.2 (the bundled sample), 3.4 (isbi2012-membrane), 2.3 (camvid-val)."""
OUTLIER_MAD_FLOOR = 0.05
"""Smallest spread (MAD of log(1 + value), ~5%) used as the z-score's scale, so that a very uniform
dataset does not turn a small difference into a large z."""
OUTLIER_MIN_FILES = 10
"""Files of one type and channel count needed before outliers are looked for."""
OUTLIER_MAX_SHARE = 0.1
"""More flagged files than this share of their group are a second population, not outliers."""
PERCENTILE_SAMPLE = 1 << 18
"""Pixel values (at most, taken with a regular stride) used for an image's percentiles."""
LIST_CAP = 10
"""Files named in a finding's evidence (the count gives the total)."""

MODES = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}
PICTURE_EXTENSIONS = PIL_EXTENSIONS + TIFF_EXTENSIONS
"""Files judged for used range and intensity outliers. NIfTI/NPY are left out: their signed
16-bit volumes (MRI 0..3000) are read as uint16, and the slices of a volume are not files."""


@dataclass(frozen=True)
class ImageFormat:
    """The few numbers the format checks need from one image file.

    Attributes:
        name: display name of the file (``images/a.png``).
        ext: lower-case file extension.
        dtype: sample type as read (``uint8``, ``uint16`` or ``float32``).
        channels: channels as read (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
        alpha: ``(min, max)`` of the alpha channel, or None without one.
        vmin: smallest value of the colour channels.
        vmax: largest value of the colour channels.
        median: median of the colour channels.
        iqr: interquartile range (75th - 25th percentile) of the colour channels.
    """

    name: str
    ext: str
    dtype: str
    channels: int
    alpha: tuple[float, float] | None
    vmin: float
    vmax: float
    median: float
    iqr: float

    @property
    def mode(self) -> str:
        """``gray``, ``gray+alpha``, ``RGB``, ``RGBA`` (or ``N channels``)."""
        return MODES.get(self.channels, f"{self.channels} channels")

    @property
    def colour_channels(self) -> int:
        """Channels without alpha."""
        return self.channels - 1 if self.channels in (2, 4) else self.channels


def image_format(name: str, path: str | Path, image: np.ndarray) -> ImageFormat | None:
    """Summarize one image (as returned by :func:`segdoctor.data.read_image`).

    Args:
        name: display name used in findings.
        path: the file (for its extension).
        image: ``(H, W, C)`` in the file's native dtype.

    Returns:
        An :class:`ImageFormat`, or None for an image without pixels.

    Example:
        >>> import numpy as np
        >>> f = image_format("a.png", "a.png", np.full((4, 4, 1), 7, np.uint16))
        >>> f.mode, f.dtype, f.vmax
        ('gray', 'uint16', 7.0)
    """
    if image.size == 0:
        return None
    c = image.shape[-1]
    alpha = None
    colour = image  # (H, W, C) without alpha
    if c in (2, 4):
        alpha = (float(image[..., -1].min()), float(image[..., -1].max()))
        colour = image[..., :-1]
    flat = colour.reshape(-1)  # (H*W*C,)
    sample = flat[:: max(1, flat.size // PERCENTILE_SAMPLE)]
    q25, q50, q75 = (float(v) for v in np.percentile(sample, (25, 50, 75)))
    return ImageFormat(
        name=name,
        ext=file_extension(path),
        dtype=str(image.dtype),
        channels=int(c),
        alpha=alpha,
        vmin=float(flat.min()),
        vmax=float(flat.max()),
        median=q50,
        iqr=q75 - q25,
    )


def format_findings(formats: list[ImageFormat]) -> list[Finding]:
    """Every format check over the summaries of a dataset's images.

    Example:
        >>> import numpy as np
        >>> fmts = [image_format(f"{i}.png", "x.png", np.zeros((2, 2, 1), np.uint8) + i)
        ...         for i in range(3)]
        >>> format_findings(fmts)
        []
    """
    if not formats:
        return []
    return [
        *_range_findings(formats),
        *_depth_findings(formats),
        *_channel_findings(formats),
        *_alpha_findings(formats),
        *_outlier_findings(formats),
    ]


def _names(formats: list[ImageFormat]) -> list[str]:
    return [f.name for f in formats[:LIST_CAP]]


def _bits(value: float) -> int:
    return max(1, int(np.ceil(np.log2(value + 1))))


def _range_group(f: ImageFormat) -> str:
    if f.vmax <= 255:
        return "max <= 255 (8 bits)"
    if f.vmax <= NARROW_MAX:
        return "max <= 4095 (12 bits)"
    return "span <= 4095 above an offset"


def _range_findings(formats: list[ImageFormat]) -> list[Finding]:
    wide = [f for f in formats if f.dtype == "uint16" and f.ext in PICTURE_EXTENSIONS]
    narrow = [f for f in wide if 0 < f.vmax - f.vmin <= NARROW_MAX]  # constant: input-constant
    if not narrow:
        return []
    top = int(max(f.vmax for f in narrow))
    span = int(max(f.vmax - f.vmin for f in narrow))
    groups = Counter(_range_group(f) for f in narrow)
    groups["wider"] = len(wide) - len(narrow)
    variant = "8-bit" if top <= 255 else ("12-bit" if top <= NARROW_MAX else "offset")
    return [
        make_finding(
            "image-range-narrow",
            {
                "files": _names(narrow),
                "count": len(narrow),
                "of_16bit_files": len(wide),
                "groups": dict(groups),
                "largest_value": top,
                "largest_span": span,
                "fraction_of_range_used": span / 65535,
                "threshold_span": NARROW_MAX,
            },
            variant=variant,
            bits=_bits(top),
        )
    ]


def _minority(formats: list[ImageFormat], key) -> tuple[dict[str, int], list[ImageFormat]]:
    """Counts per group (largest first) and the files outside the largest group."""
    counts = Counter(key(f) for f in formats)
    groups = dict(counts.most_common())
    major = next(iter(groups))
    return groups, [f for f in formats if key(f) != major]


def _depth_findings(formats: list[ImageFormat]) -> list[Finding]:
    if len({f.dtype for f in formats}) < 2:
        return []
    groups, _ = _minority(formats, lambda f: f"{f.dtype} {f.ext}")
    _, odd_depth = _minority(formats, lambda f: f.dtype)
    ranges = {}  # dtype -> [min, max] over its files
    for f in formats:
        lo, hi = ranges.get(f.dtype, [f.vmin, f.vmax])
        ranges[f.dtype] = [min(lo, f.vmin), max(hi, f.vmax)]
    return [
        make_finding(
            "image-mixed-bit-depth",
            {
                "groups": groups,
                "files": _names(odd_depth),
                "count": len(odd_depth),
                "value_range_per_type": ranges,
            },
        )
    ]


def _channel_findings(formats: list[ImageFormat]) -> list[Finding]:
    modes = {f.mode for f in formats}
    if len(modes) < 2:
        return []
    groups, odd = _minority(formats, lambda f: f.mode)
    has_alpha = {f.channels in (2, 4) for f in formats}
    severity = "warning" if has_alpha == {True, False} else "info"
    return [
        make_finding(
            "image-mixed-channels",
            {"groups": groups, "files": _names(odd), "count": len(odd), "of": len(formats)},
            variant=None if severity == "warning" else "gray-and-rgb",
            severity=severity,
        )
    ]


def _alpha_findings(formats: list[ImageFormat]) -> list[Finding]:
    with_alpha = [f for f in formats if f.alpha is not None]
    if not with_alpha:
        return []
    varying = [f for f in with_alpha if f.alpha[0] != f.alpha[1]]
    if varying:
        return [
            make_finding(
                "image-alpha",
                {
                    "files": _names(varying),
                    "count": len(varying),
                    "alpha_ranges": [[f.alpha[0], f.alpha[1]] for f in varying[:LIST_CAP]],
                    "files_with_alpha": len(with_alpha),
                },
                variant="varying",
            )
        ]
    if len(with_alpha) < len(formats):
        return []  # constant alpha among files without: reported by image-mixed-channels
    return [
        make_finding(
            "image-alpha",
            {
                "files": _names(with_alpha),
                "count": len(with_alpha),
                "alpha_value": with_alpha[0].alpha[0],
            },
            variant="constant",
            severity="info",
        )
    ]


def _robust_z(values: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 * MAD)`` with the MAD floored at :data:`OUTLIER_MAD_FLOOR`."""
    centre = np.median(values)
    mad = max(float(np.median(np.abs(values - centre))), OUTLIER_MAD_FLOOR)
    return (values - centre) / (1.4826 * mad)


def _outlier_findings(formats: list[ImageFormat]) -> list[Finding]:
    flagged: list[tuple[ImageFormat, float, float]] = []
    groups: dict[str, int] = {}
    pictures = [f for f in formats if f.ext in PICTURE_EXTENSIONS]
    for key in sorted({(f.dtype, f.colour_channels) for f in pictures}):
        group = [f for f in pictures if (f.dtype, f.colour_channels) == key]
        if len(group) < OUTLIER_MIN_FILES:
            continue
        groups[f"{key[0]}, {key[1]} channel(s)"] = len(group)
        z_med = _robust_z(np.log1p(np.maximum([f.median for f in group], 0.0)))
        z_iqr = _robust_z(np.log1p(np.maximum([f.iqr for f in group], 0.0)))
        hits = [
            (f, float(zm), float(zi))
            for f, zm, zi in zip(group, z_med, z_iqr, strict=True)
            if max(abs(zm), abs(zi)) > OUTLIER_Z and f.vmax > f.vmin  # constant: input-constant
        ]
        if hits and len(hits) <= OUTLIER_MAX_SHARE * len(group):
            flagged += hits
    if not flagged:
        return []
    flagged.sort(key=lambda t: -max(abs(t[1]), abs(t[2])))
    return [
        make_finding(
            "image-intensity-outlier",
            {
                "files": [
                    f"{f.name}: median {f.median:g}, IQR {f.iqr:g} (z {zm:+.1f}, {zi:+.1f})"
                    for f, zm, zi in flagged[:LIST_CAP]
                ],
                "count": len(flagged),
                "groups": groups,
                "threshold_z": OUTLIER_Z,
            },
            confidence=0.7,
        )
    ]
