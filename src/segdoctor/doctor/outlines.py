"""Masks that outline their objects instead of filling them (``mask-outlines``).

``cv2.drawContours(mask, contours, -1, 1, thickness=1)`` draws each object's boundary; the
filled mask needs ``thickness=-1`` (sixth blind test, F1: DSB nuclei as 1-pixel outlines, the
model learned to predict nothing, true Dice 0.14 against 0.85; the doctor blamed the pairing).

A foreground component counts as an *outline* when

1. it is thin: a 3 x 3 erosion removes at least :data:`THIN_SHARE` of it;
2. it encloses background at least as large as itself (``binary_fill_holes``), and
3. the image says the object is the filled region, not the line: the enclosed pixels differ from
   the pixels just outside at least as much as the line does (mean intensity). Membranes of
   isolated cells, vessel walls and other true thin rings are drawn on a line the image shows
   as such, with inside and outside alike.

Example:
    >>> img = np.zeros((40, 40)); img[10:30, 10:30] = 1.0  # a filled square object
    >>> ring = np.zeros((40, 40), bool); ring[10:30, 10:30] = True; ring[11:29, 11:29] = False
    >>> outline_counts(img, ring), outline_counts(img, img > 0)
    ((1, 1), (0, 1))
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segdoctor.doctor.components import edge_labels

MIN_COMPONENT = 12
"""Pixels a foreground component needs to be judged."""
THIN_SHARE = 0.8
"""Share of a component a 3 x 3 erosion must remove for it to count as a line."""
BAND = 2
"""Width in pixels of the band just outside a component that its contrast is measured against."""
MIN_OUTLINES = 8
"""Outlines ``mask-outlines`` needs in all..."""
MIN_PAIRS = 3
"""...in at least this many pairs..."""
OUTLINE_SHARE = 0.5
"""...and this share of all judged components (measured: see docs/troubleshooting.md)."""

_EIGHT = np.ones((3, 3), bool)


def _gray(image: np.ndarray) -> np.ndarray:
    gray = np.asarray(image, dtype="float64")
    return gray.mean(axis=-1) if gray.ndim == 3 else gray


def outline_counts(image: np.ndarray, fg: np.ndarray) -> tuple[int, int]:
    """``(outlines, components)``: foreground components that outline a filled object, and all
    components judged: at least :data:`MIN_COMPONENT` pixels (8-connected), not touching the
    image's edge (a crop cuts outlines open there).

    Args:
        image: (H, W) or (H, W, C), any numeric dtype.
        fg: (H, W) boolean foreground.
    """
    fg = np.asarray(fg, bool)
    if tuple(np.shape(image)[:2]) != fg.shape:
        return 0, 0
    labels, n = ndimage.label(fg, structure=_EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    # one erosion of the whole mask: 8-connected components do not touch, so each component's
    # eroded part is its own erosion (per component, 10x slower on a DSB image of 40 nuclei)
    kept = np.bincount(labels[ndimage.binary_erosion(fg, _EIGHT)], minlength=n + 1)
    judge = sizes >= MIN_COMPONENT
    judge[edge_labels(labels)] = False
    judge[0] = False  # the background; components on the image's edge are cut open there
    thin = judge & (kept <= (1.0 - THIN_SHARE) * sizes)
    if not thin.any():  # filled objects (healthy masks): done, without reading the image
        return 0, int(judge.sum())
    gray, boxes = _gray(image), ndimage.find_objects(labels)
    outlines = 0
    for index in np.flatnonzero(thin):
        box = boxes[index - 1]
        # the component's box grown by the band: everything below is local to it
        rows = slice(max(box[0].start - BAND - 1, 0), box[0].stop + BAND + 1)
        cols = slice(max(box[1].start - BAND - 1, 0), box[1].stop + BAND + 1)
        part = labels[rows, cols] == index
        area = int(sizes[index])
        inside = ndimage.binary_fill_holes(part) & ~part
        if inside.sum() < area:
            continue
        filled = part | inside
        band = ndimage.binary_dilation(filled, _EIGHT, iterations=BAND) & ~filled
        band &= ~fg[rows, cols]
        if band.sum() < MIN_COMPONENT:
            continue
        local = gray[rows, cols]
        outside = local[band].mean()
        if abs(local[inside].mean() - outside) >= abs(local[part].mean() - outside):
            outlines += 1
    return outlines, int(judge.sum())


def outlines_found(counts) -> bool:
    """Whether per-pair ``(outlines, components)`` counts say the masks are outlines.

    Example:
        >>> outlines_found([(4, 5), (3, 3), (2, 4)]), outlines_found([(0, 5), (1, 30), (9, 40)])
        (True, False)
    """
    counts = [(o, c) for o, c in counts if c]
    outlines = sum(o for o, _ in counts)
    judged = sum(c for _, c in counts)
    pairs = sum(1 for o, _ in counts if o)
    return outlines >= MIN_OUTLINES and pairs >= MIN_PAIRS and outlines >= OUTLINE_SHARE * judged


def outline_evidence(named_counts, where: str) -> dict:
    """The evidence of ``mask-outlines`` from ``(name, (outlines, components))`` per pair."""
    hit = [name for name, (o, _) in named_counts if o]
    return {
        "outlines": sum(o for _, (o, _) in named_counts),
        "components": sum(c for _, (_, c) in named_counts),
        "pairs": len(hit),
        "of_pairs": len(named_counts),
        "examples": hit[:10],
        "where": where,
    }
