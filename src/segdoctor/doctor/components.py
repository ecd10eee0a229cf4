"""Connected components of a mask: the pieces the object-size checks share.

Example:
    >>> labels = np.array([[1, 0, 0], [0, 0, 2], [0, 0, 0]])
    >>> sorted(edge_labels(labels)), weighted_area(np.array([4.0, 9.0]))
    ([0, 1, 2], 7.461538461538462)
"""

from __future__ import annotations

import numpy as np


def edge_labels(labels: np.ndarray) -> np.ndarray:
    """The labels of a labelled image ``(H, W)`` that touch its edge (0 included when on it)."""
    return np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))


def weighted_area(sizes: np.ndarray) -> float | None:
    """The area of the component an average pixel lies in: ``sum(a^2) / sum(a)`` over the
    component sizes ``sizes`` (zeros ignored); None when there is none."""
    sizes = np.asarray(sizes, dtype=np.float64)
    sizes = sizes[sizes > 0]
    return float((sizes * sizes).sum() / sizes.sum()) if sizes.size else None
