"""How far a segmentation model sees (``receptive-field-small``).

A network labels a pixel from the input window it sees around it, its receptive field. When that
window is smaller than the objects, the model can only classify pixels by local intensity: it
cannot see an object as a whole, its edges or its context. A U-Net of depth 3 sees 40-70 px, a
depth-4 one 140 px; a head wired to the first encoder block by a typo (``Conv2D(1, 1)(c1)`` for
``(c9)``) sees 5 px (sixth blind test, F4: a 2,497-parameter model, true Dice 0.75 against 0.85,
only an info finding).

The field is measured, not derived from the layers: one input pixel of random inputs is changed
and the output pixels that move are counted (two forward passes, any backend, any architecture).

Example:
    >>> import keras
    >>> inputs = keras.Input((None, None, 1))
    >>> x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    >>> x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    >>> receptive_field(keras.Model(inputs, keras.layers.Conv2D(1, 1)(x)))
    5
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from scipy import ndimage

from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.components import edge_labels, weighted_area
from segdoctor.doctor.findings import Finding

PROBE_SIZE = 96
"""Side of the probe input for models without a fixed input size: fields at least this wide
are reported as this wide (they are not small)."""
SMALL = 32
"""Receptive fields (pixels) below this can be ``receptive-field-small``..."""
MIN_OBJECTS = 5
"""...when the masks of at least this many images (or samples) hold objects whose typical
diameter exceeds the field. The callback sees 3 batches: of 64 px DSB tiles a third hold an
object that does not touch the tile's edge (175 of 520 in the sixth blind test's F4), so 8 of 24
samples was a coin flip (the callback stayed silent there); 5 is not."""
SHARE_OF_OBJECT = 0.5
"""...and under this share of that diameter: a field that spans half an object reaches from its
centre to its edge (the synthetic disks of examples/, 6-10 px across, are seen by the examples'
two 3 x 3 convolutions, 5 px; the blind test's DSB crops, 18.5 px across, were not by them)."""
RELATIVE_TOLERANCE = 1e-4
"""An output pixel moved when its change exceeds this share of the largest change."""


def receptive_field(model) -> int | None:
    """The side (pixels) of the window of inputs an output pixel depends on; None when the model
    does not map an image to a same-sized map of scores (or cannot be run on one).

    Args:
        model: a Keras model with one image input ``(H, W, C)`` (H, W may be None).
    """
    try:
        shape = tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if len(shape) != 4 or shape[3] is None:
        return None
    h, w = shape[1] or PROBE_SIZE, shape[2] or PROBE_SIZE
    x = np.random.default_rng(0).normal(0.0, 1.0, (2, h, w, shape[3])).astype("float32")
    x[1] = x[0]
    x[1, h // 2, w // 2, :] += 10.0  # one input pixel changed
    try:
        out = model(x, training=False)
    except Exception:  # a model that cannot run on this size: no verdict
        return None
    if isinstance(out, (list, tuple)):
        out = out[0]
    elif isinstance(out, dict):
        out = next(iter(out.values()))
    out = np.asarray(keras.ops.convert_to_numpy(out), dtype="float64")
    if out.ndim != 4 or out.shape[1:3] != (h, w):
        return None
    moved = np.abs(out[1] - out[0]).max(axis=-1)  # (H, W)
    if not np.isfinite(moved).all() or moved.max() <= 0:
        return None
    hit = moved > RELATIVE_TOLERANCE * moved.max()
    rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)


def interior_object_area(fg: np.ndarray, labels: np.ndarray | None = None) -> float | None:
    """Area-weighted mean area (pixels) of the foreground components that do not touch the image's
    edge: objects the image shows whole. None without such components: a region that runs off the
    image (a road, the sky, a tissue background) is not an object a field must span.

    Example:
        >>> m = np.zeros((16, 16), bool); m[4:8, 4:8] = True; m[10:, :] = True  # a blob, a band
        >>> interior_object_area(m)
        16.0
    """
    if labels is None:  # the components of ``fg``, unless the caller has labelled them
        labels, _ = ndimage.label(np.asarray(fg, bool))
    sizes = np.bincount(labels.ravel())
    sizes[edge_labels(labels)] = 0  # components on the edge
    return weighted_area(sizes[1:])


def typical_diameter(areas: Sequence[float | None]) -> tuple[float | None, int]:
    """Median equivalent diameter (pixels) of the per-image object areas, and how many images
    had objects."""
    values = [a for a in areas if a]
    if not values:
        return None, 0
    return float(2.0 * np.sqrt(np.median(values) / np.pi)), len(values)


def receptive_field_findings(
    field: int | None, areas: Sequence[float | None], where: str
) -> list[Finding]:
    """``receptive-field-small``: a field under :data:`SMALL` pixels and under
    :data:`SHARE_OF_OBJECT` of the objects' typical diameter (``areas``: per image,
    :func:`interior_object_area`).

    Example:
        >>> [f.id for f in receptive_field_findings(5, [150.0] * 10, "data folder")]
        ['receptive-field-small']
        >>> receptive_field_findings(68, [150.0] * 10, "data folder")
        []
    """
    diameter, images = typical_diameter(areas)
    if field is None or diameter is None or images < MIN_OBJECTS:
        return []
    if field >= SMALL or field >= diameter * SHARE_OF_OBJECT:
        return []
    evidence = {
        "receptive_field_px": field,
        "object_diameter_px": round(diameter, 1),
        "images": images,
        "where": where,
        "threshold_px": SMALL,
    }
    return [make_finding("receptive-field-small", evidence)]
