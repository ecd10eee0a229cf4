"""Split-aware data checks: compare training and validation as a training run sees them.

Which splits are compared:

* the splits the data declares: ``train/`` and ``val/`` folders (also ``valid``, ``test``), or a
  CSV ``split`` column (at least two different splits);
* nnU-Net ``imagesTs`` (unlabelled test cases, channel ``_0000``, 2D files): a ``test`` split
  compared for intensity and duplicates only;
* otherwise (one folder of pairs, an nnU-Net ``imagesTr``), **the split segdoctor train would
  make**: :func:`segdoctor.data.split_pairs` with the defaults that ``segdoctor train`` uses
  (``val_fraction`` :data:`~segdoctor.data.split.DEFAULT_VAL_FRACTION`, seed
  :data:`~segdoctor.data.split.DEFAULT_SPLIT_SEED`, no grouping).

Every other split is compared with the reference split (``train``, else the largest one), and every
finding states the numbers of each split in its evidence. Thresholds (also in
``docs/troubleshooting.md``):

* ``split-class-absent``: a class present in one split and in no mask of the other. If the splits
  were drawn from one population, the chance that none of the ``n`` masks of the other split holds
  a class that a fraction ``p`` of this split's masks hold is ``(1 - p) ** n``; below
  :data:`CLASS_CHANCE_ERROR` it is an error (the split is systematically missing it), below
  :data:`CLASS_CHANCE_WARN` a warning, else info (a rare class left out by chance: its validation
  Dice is still undefined).
* ``split-empty-masks``: empty-mask rates differ by at least :data:`EMPTY_RATE_DIFF` and Fisher's
  exact test gives p < :data:`SHIFT_P_MAX`.
* ``split-object-size`` (D at least :data:`OBJECT_SIZE_KS_MIN`, see there) and
  ``split-intensity-shift``: the two-sample Kolmogorov-Smirnov statistic
  D (the largest gap between the two splits' cumulative distributions of a per-image number) is at
  least :data:`SHIFT_KS_MIN` with p < :data:`SHIFT_P_MAX`, each split holding at least
  :data:`MIN_PER_SPLIT` images. D is an effect size (0.6: at some value, 60% more of one split
  lies below it than of the other), not just significance; p < 0.001 keeps small splits from
  firing by chance. Calibration: over 200 random re-splits (seeds 0-199, the 0.2 fraction of
  ``segdoctor train``) of dsb2018-nuclei, camvid-val and isbi2012-membrane, D of the per-image
  mean and std reached at most 0.38, 0.49 and 0.67 (the last with p > 0.001 at 6 validation
  images); camvid's video frames are correlated, which widens chance differences. Object sizes
  must also differ by a factor :data:`OBJECT_SIZE_RATIO` in their median, and intensity medians
  by :data:`INTENSITY_REL_DIFF` of the larger one: consecutive video frames (CamVid) split in
  order give D = 1 for a 1.5% difference in contrast, which per-image normalization absorbs.
* ``split-image-size``: the other split's images are crops of the reference's: their median pixel
  count is at most 1 / :data:`CROP_AREA_RATIO` of it, with the KS D (log pixel count) at least
  :data:`SHIFT_KS_MIN` and p < :data:`SHIFT_P_MAX`. Only smaller images are reported: training on
  patches and validating whole images is the right way round.
* ``split-channel-order``: one split's RGB images look like the other's with red and blue swapped
  (:func:`channel_order`).
* ``duplicate-across-splits``: pixel-identical images (SHA-1 of the decoded pixels), across
  splits also flipped or rotated copies (:func:`~segdoctor.data.split.orientation_free_hash`),
  copies with changed brightness, contrast or colour (:mod:`segdoctor.data.near_copies`), or the
  same file name in two splits.
* ``overlap-across-splits``: images of two splits that share a region pixel for pixel at an
  offset (tiles cut with overlap from one larger image; :mod:`segdoctor.data.overlap`). An error
  when at least :data:`LEAK_ERROR` of the other split's pixels lie in such regions of declared
  splits, else a warning; a warning when the split is the one segdoctor train would make.
  Pixel-identical pairs are left to ``duplicate-across-splits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

from segdoctor.data.discover import Pair
from segdoctor.data.io import file_stem, is_supported, read_image
from segdoctor.data.near_copies import photometric_copies, thumbnail
from segdoctor.data.overlap import BlockPrint, block_print, find_overlaps
from segdoctor.data.split import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_VAL_FRACTION,
    content_hash,
    group_key,
    orientation_free_hash,
    split_pairs,
)
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.components import weighted_area
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.receptive_field import interior_object_area
from segdoctor.errors import SegdoctorError

CLASS_CHANCE_ERROR = 1e-3
"""``split-class-absent`` is an error when the absence has a chance below this (one population)."""
CLASS_CHANCE_WARN = 0.05
"""``split-class-absent`` is a warning below this chance, info above it."""
EMPTY_RATE_DIFF = 0.25
"""Smallest difference of empty-mask rates between splits for ``split-empty-masks``."""
SHIFT_KS_MIN = 0.6
"""Smallest Kolmogorov-Smirnov statistic D for ``split-intensity-shift`` / ``split-object-size``."""
SHIFT_P_MAX = 1e-3
"""Largest p-value (KS test, Fisher's exact test) at which a split difference is reported."""
MIN_PER_SPLIT = 5
"""Images each split needs before distributions are compared."""
OBJECT_SIZE_RATIO = 2.0
"""Smallest ratio of the splits' median object areas for ``split-object-size``."""
OBJECT_SIZE_KS_MIN = 0.3
"""KS D (log areas) ``split-object-size`` needs, with the median ratio and p < :data:`SHIFT_P_MAX`.
Lower than :data:`SHIFT_KS_MIN`: per-image object sizes of one dataset spread over an order of
magnitude, so a split at another scale overlaps the other a lot. The third blind test's training
tiles cut from 2x downscaled images (193 and 140 images) gave D = 0.38, p = 5e-11, areas 97 and
202 px: silent at 0.6. Over 300 random 80/20 re-splits each of dsb2018-nuclei, camvid-val and
isbi2012-membrane, none met the ratio, p and D = 0.3 together."""
INTENSITY_REL_DIFF = 0.2
"""Smallest difference of the splits' median intensity mean (or std), relative to the larger."""
CROP_AREA_RATIO = 4.0
"""``split-image-size``: the reference split's median pixel count over the other's (a crop of half
the side or less). Over 200 random re-splits (0.2) of dsb2018-nuclei (256x256 to 1388x1040) the
ratio reached at most 1.25; 32 px validation crops of 128 px images give 16."""
CLASSES_SHOWN = 8
"""Classes named per split in the evidence of ``split-class-absent`` (all are in ``classes``)."""
MAX_MASK_VALUES = 64
"""Masks with more distinct values (instance labels) record no value set."""
MAX_TEST_IMAGES = 1000
LEAK_ERROR = 0.2
"""Share of a split's pixels shared with the reference split from which ``overlap-across-splits``
is an error (declared splits). Overlapping tiles at half the tile size as the stride put every
validation tile's whole area in training tiles (share 1.0); a strip along one edge, a few percent."""
"""nnU-Net ``imagesTs`` files read at most (in name order)."""
BINARY_KINDS = ("binary", "scale-255", "two-value", "instance")
"""Mask kinds whose only class (besides background) is "foreground"."""


@dataclass(frozen=True)
class PairStats:
    """The per-pair numbers the split checks need (computed while the pair is read).

    Attributes:
        name: Pair name.
        split: Declared split (``""`` when none).
        digest: Content hash of the decoded image, or ``None`` when it could not be read.
        mean: Mean image intensity (all channels), or ``None``.
        std: Standard deviation of the image intensity, or ``None``.
        values: Distinct mask values (at most :data:`MAX_MASK_VALUES`), else ``None``.
        foreground: Whether the mask has any non-zero pixel.
        object_area: Area (pixels) of the connected foreground component an average foreground
            pixel lies in (components weighted by their area).
        interior_area: The same over the components that do not touch the image's edge.
        labelled: False for an unlabelled test image (nnU-Net ``imagesTs``): no mask numbers.
        shape: ``(H, W)`` of the mask (``None``: not recorded).
        oriented: :func:`~segdoctor.data.split.orientation_free_hash` of the image, or ``None``.
        blocks: :func:`~segdoctor.data.overlap.block_print` of the image, or ``None``.
        balance: :func:`channel_balance` of the image (``None``: not an RGB image).
        thumb: :func:`~segdoctor.data.near_copies.thumbnail` of the image, or ``None``.
    """

    name: str
    split: str
    digest: str | None
    mean: float | None
    std: float | None
    values: tuple[int, ...] | None
    foreground: bool
    object_area: float | None
    labelled: bool = True
    shape: tuple[int, int] | None = None
    oriented: str | None = None
    blocks: BlockPrint | None = None
    balance: tuple[float, float] | None = None
    thumb: np.ndarray | None = None
    interior_area: float | None = None  # receptive_field.interior_object_area


def object_area(fg: np.ndarray, labels: np.ndarray | None = None) -> float | None:
    """The area (pixels) of the connected foreground component an average foreground pixel lies
    in: the components' area-weighted mean; None without foreground.

    Not the median component: a scene labelled almost everywhere, cut by a few void pixels into
    one large region and specks, had a median of 5 px in one frame and 12,000 in the next (sixth
    blind test, CamVid twin: a split-object-size warning on healthy data).

    Example:
        >>> m = np.zeros((8, 8), bool); m[1:3, 1:3] = True; m[5:8, 5:8] = True
        >>> round(object_area(m), 2)  # components of 4 and 9 pixels
        7.46
    """
    if not fg.any():
        return None
    if labels is None:  # the components of ``fg``, unless the caller has labelled them
        labels, _ = ndimage.label(fg)
    return weighted_area(np.bincount(labels.ravel())[1:])


def pair_stats(pair, image: np.ndarray | None, mask: np.ndarray, digest: str | None) -> PairStats:
    """Summarize one read pair for the split checks.

    Example:
        >>> from pathlib import Path
        >>> from segdoctor.data import Pair
        >>> m = np.zeros((8, 8), np.uint8); m[1:3, 1:3] = 1; m[5:8, 5:8] = 1
        >>> s = pair_stats(Pair("a", Path("a"), Path("b")), np.ones((8, 8, 1)), m, None)
        >>> s.values, round(s.object_area, 2)
        ((0, 1), 7.46)
    """
    fg = np.any(mask != 0, axis=-1) if mask.ndim == 3 else mask != 0  # (H, W)
    values = None
    if mask.ndim == 2 and mask.dtype.kind in "iub":
        uniq = np.unique(mask)
        if len(uniq) <= MAX_MASK_VALUES:
            values = tuple(int(v) for v in uniq)
    labels = ndimage.label(fg)[0] if fg.any() else None  # once, for both areas
    area = object_area(fg, labels)
    mean = std = None
    if image is not None:
        pixels = image.astype(np.float64, copy=False)
        mean, std = float(pixels.mean()), float(pixels.std())
    return PairStats(
        name=pair.name,
        split=pair.split or "",
        digest=digest,
        mean=mean,
        std=std,
        values=values,
        foreground=bool(fg.any()),
        object_area=area,
        interior_area=interior_object_area(fg, labels) if area else None,
        shape=(int(fg.shape[0]), int(fg.shape[1])),
        oriented=None if image is None else orientation_free_hash(image),
        blocks=None if image is None else block_print(image),
        balance=None if image is None else channel_balance(image),
        thumb=None if image is None else thumbnail(image),
    )


@dataclass(frozen=True)
class _Split:
    name: str
    items: list[PairStats]

    @property
    def n(self) -> int:
        return len(self.items)


def assign_splits(index, records: Sequence[PairStats]) -> tuple[list[_Split], str, bool]:
    """Group the records by the data's own splits, or by the split segdoctor train would make.

    Returns:
        ``(splits, source, declared)``: the reference split first; ``source`` says where the
        split comes from; ``declared`` is True for the data's own splits.
    """
    declared = {r.split for r in records if r.split}
    if len(declared) >= 2:
        source = "the data's own splits" + (
            " (CSV split column)" if index.layout == "csv" else " (folders)"
        )
        groups: dict[str, list[PairStats]] = {}
        for r in records:
            groups.setdefault(r.split or "unassigned", []).append(r)
    else:
        try:
            train, val = split_pairs(index.pairs, DEFAULT_VAL_FRACTION, DEFAULT_SPLIT_SEED)
        except SegdoctorError:  # fewer than two pairs: nothing to compare
            return [], "", False
        side = {p.name: "train" for p in train} | {p.name: "val" for p in val}
        groups = {}
        for r in records:
            groups.setdefault(side.get(r.name, "train"), []).append(r)
        source = (
            f"the split segdoctor train would make (val_fraction {DEFAULT_VAL_FRACTION}, "
            f"seed {DEFAULT_SPLIT_SEED})"
        )
    test = _unlabelled_test_images(index)
    if test and "test" not in groups:
        groups["test"] = test
        source += "; nnU-Net imagesTs as an unlabelled test split"
    ref = "train" if "train" in groups else max(groups, key=lambda k: len(groups[k]))
    order = [ref, *sorted(k for k in groups if k != ref)]
    return [_Split(k, groups[k]) for k in order], source, len(declared) >= 2


def _unlabelled_test_images(index) -> list[PairStats]:
    """Channel ``_0000`` of the nnU-Net ``imagesTs`` cases (intensity and hash; no mask)."""
    folder = Path(index.root) / "imagesTs" if index.layout == "nnunet" else None
    if folder is None or not folder.is_dir():
        return []
    paths = [p for p in sorted(folder.iterdir()) if is_supported(p) and p.is_file()]
    out = []
    for path in [p for p in paths if file_stem(p).endswith("_0000")][:MAX_TEST_IMAGES]:
        try:
            image = read_image(path)  # (H, W, C); 3D volumes need a slice: skipped
        except (SegdoctorError, OSError, ValueError):
            continue
        pixels = image.astype(np.float64, copy=False)
        name = file_stem(path)[: -len("_0000")]
        mean, std = float(pixels.mean()), float(pixels.std())
        out.append(
            PairStats(
                name,
                "test",
                content_hash(image),
                mean,
                std,
                None,
                False,
                None,
                False,
                oriented=orientation_free_hash(image),
                blocks=block_print(image),
                thumb=thumbnail(image),
            )
        )
    return out


def check_splits(index, records: Sequence[PairStats], mask_kind: str | None) -> list[Finding]:
    """Compare the splits of a dataset: classes, empty masks, object size, intensity, duplicates.

    Args:
        index: The :class:`~segdoctor.data.PairIndex` the records come from.
        records: One :class:`PairStats` per readable pair.
        mask_kind: The detected mask kind (:class:`~segdoctor.data.MaskReport`), or ``None``.

    Returns:
        Findings; each has the split source and one entry per split in its evidence.

    Example:
        >>> check_splits(None, [], None)
        []
    """
    if not records:
        return []
    splits, source, declared = assign_splits(index, records)
    if len(splits) < 2:
        return []
    found = _duplicates(splits, source, declared, _photometric(index, splits))
    found += _overlaps(splits, source, declared)
    ref = splits[0]
    for other in splits[1:]:
        pair = (ref, other)
        if all(item.labelled for item in other.items):
            found += _class_absent(pair, source, mask_kind)
            found += _empty_rate(pair, source)
            found += _object_size(pair, source)
            found += _image_size(pair, source)
        found += _intensity(pair, source)
        found += _channel_order(pair, source)
    return found


def _class_names(mask_kind: str | None) -> str | None:
    if mask_kind in BINARY_KINDS:
        return "binary"
    return "multiclass" if mask_kind == "multiclass" else None


def _classes_of(item: PairStats, mode: str) -> set[int]:
    if mode == "binary":
        return {1} if item.foreground else set()
    return set(item.values or ())


def _class_absent(pair: tuple[_Split, _Split], source: str, mask_kind: str | None) -> list[Finding]:
    mode = _class_names(mask_kind)
    if mode is None:
        return []
    counts = []
    for split in pair:
        count: dict[int, int] = {}
        for item in split.items:
            for c in _classes_of(item, mode):
                count[c] = count.get(c, 0) + 1
        counts.append(count)
    rows, chances = [], []
    for c in sorted(set(counts[0]) | set(counts[1])):
        for have, lack in ((0, 1), (1, 0)):
            k = counts[have].get(c, 0)
            if k and not counts[lack].get(c, 0):
                chance = (1 - k / pair[have].n) ** pair[lack].n
                rows.append((c, have, lack, k, chance))
                chances.append(chance)
    if not rows:
        return []
    worst = min(chances)
    severity = (
        "error"
        if worst < CLASS_CHANCE_ERROR
        else ("warning" if worst < CLASS_CHANCE_WARN else "info")
    )
    label = "foreground" if mode == "binary" else "class {}"
    evidence: dict = {"split": source}
    for i, split in enumerate(pair):
        evidence[split.name] = "; ".join(
            f"{label.format(c)} in {counts[i].get(c, 0)}/{split.n} masks"
            for c, *_ in rows[:CLASSES_SHOWN]
        ) + (f"; ... {len(rows) - CLASSES_SHOWN} more" if len(rows) > CLASSES_SHOWN else "")
    evidence["chance_if_same_population"] = [float(f"{ch:.3g}") for *_, ch in rows]
    evidence["classes"] = [c for c, *_ in rows]
    return [
        make_finding(
            "split-class-absent",
            evidence,
            severity=severity,
        )
    ]


def _empty_rate(pair: tuple[_Split, _Split], source: str) -> list[Finding]:
    empty = [sum(not i.foreground for i in s.items) for s in pair]
    rates = [e / s.n for e, s in zip(empty, pair, strict=True)]
    if abs(rates[0] - rates[1]) < EMPTY_RATE_DIFF or min(rates) == max(rates) == 1:
        return []
    table = [[empty[0], pair[0].n - empty[0]], [empty[1], pair[1].n - empty[1]]]
    p = float(stats.fisher_exact(table).pvalue)
    if p >= SHIFT_P_MAX:
        return []
    evidence: dict = {"split": source}
    for e, r, s in zip(empty, rates, pair, strict=True):
        evidence[s.name] = f"{e}/{s.n} masks empty ({r:.0%})"
    evidence["empty_rate"] = {s.name: round(r, 3) for r, s in zip(rates, pair, strict=True)}
    evidence |= {"difference": round(abs(rates[0] - rates[1]), 3), "fisher_p": float(f"{p:.3g}")}
    return [
        make_finding(
            "split-empty-masks",
            evidence,
        )
    ]


def _ks(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    result = stats.ks_2samp(np.asarray(a, float), np.asarray(b, float))
    return float(result.statistic), float(result.pvalue)


def _describe(values: Sequence[float], unit: str = "") -> str:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return f"median {med:.4g}{unit} (IQR {q1:.4g}-{q3:.4g}) over {len(values)} images"


def _size_shift(
    sizes: Sequence[Sequence[float]], ks_min: float = SHIFT_KS_MIN
) -> tuple[float, float, float] | None:
    """Two splits' per-image sizes compared: ``(ks_statistic, ks_p, median ratio)``.

    The KS test runs on the logarithms (sizes spread over orders of magnitude); the ratio is the
    first split's median over the second's. None when a split has fewer than
    :data:`MIN_PER_SPLIT` sizes, or when the KS test does not call the shift significant and
    large (``ks_min``, :data:`SHIFT_P_MAX`).
    """
    if min(len(v) for v in sizes) < MIN_PER_SPLIT:
        return None
    d, p = _ks(np.log(sizes[0]), np.log(sizes[1]))
    if d < ks_min or p >= SHIFT_P_MAX:
        return None
    return d, p, float(np.median(sizes[0]) / np.median(sizes[1]))


def _object_size(pair: tuple[_Split, _Split], source: str) -> list[Finding]:
    areas = [[i.object_area for i in s.items if i.object_area is not None] for s in pair]
    shift = _size_shift(areas, OBJECT_SIZE_KS_MIN)
    if shift is None or 1 / OBJECT_SIZE_RATIO < shift[2] < OBJECT_SIZE_RATIO:
        return []
    d, p, ratio = shift
    evidence: dict = {"split": source}
    for a, s in zip(areas, pair, strict=True):
        evidence[s.name] = "object area " + _describe(a, " px")
    evidence |= {"ks_statistic": round(d, 3), "ks_p": float(f"{p:.3g}"), "median_ratio": ratio}
    return [
        make_finding(
            "split-object-size",
            evidence,
        )
    ]


def _image_size(pair: tuple[_Split, _Split], source: str) -> list[Finding]:
    shapes = [[i.shape for i in s.items if i.shape] for s in pair]
    shift = _size_shift([[h * w for h, w in v] for v in shapes])
    if shift is None or shift[2] < CROP_AREA_RATIO:
        return []
    d, p, ratio = shift
    evidence: dict = {"split": source}
    for v, s in zip(shapes, pair, strict=True):
        h, w = (int(x) for x in np.median(np.array(v), axis=0))
        evidence[s.name] = f"median {h}x{w} px over {len(v)} images"
    evidence |= {
        "cropped_split": pair[1].name,
        "area_ratio": round(ratio, 2),
        "ks_statistic": round(d, 3),
        "ks_p": float(f"{p:.3g}"),
    }
    return [make_finding("split-image-size", evidence)]


def _intensity(pair: tuple[_Split, _Split], source: str) -> list[Finding]:
    stats_of = {
        s.name: {
            key: [getattr(i, key) for i in s.items if getattr(i, key) is not None]
            for key in ("mean", "std")
        }
        for s in pair
    }
    return intensity_shift(stats_of, source)


def channel_balance(image: np.ndarray) -> tuple[float, float] | None:
    """Two numbers of an RGB image that a red/blue swap negates: ``(mean R - mean B) / std`` (the
    intensity spread over all channels) and ``log(std B / std R)``; None for an image without 3
    channels or whose red and blue are the same, or with no spread.

    Example:
        >>> ramp = np.arange(16.0).reshape(4, 4)
        >>> rgb = np.stack([100 + ramp / 2, np.full((4, 4), 90.0), ramp], -1)
        >>> [round(v, 3) for v in channel_balance(rgb)]
        [2.259, 0.693]
        >>> [round(v, 3) for v in channel_balance(rgb[..., ::-1])]  # BGR: both negated
        [-2.259, -0.693]
    """
    if image.ndim != 3 or image.shape[-1] != 3:
        return None
    x = np.asarray(image, np.float64)
    red, blue = x[..., 0], x[..., 2]
    spread, std_r, std_b = float(x.std()), float(red.std()), float(blue.std())
    if spread == 0 or std_r == 0 or std_b == 0 or np.array_equal(red, blue):
        return None
    return (float(red.mean() - blue.mean()) / spread, float(np.log(std_b / std_r)))


CHANNEL_SIGN_SHARE = 0.9
"""``split-channel-order``: the share of each split's RGB images whose red/blue balance has the
split's sign, for both numbers of :func:`channel_balance`. On camvid-val (one camera) every one of
the 101 images has red below blue and blue more spread than red; dsb2018-nuclei's 27 H&E images
96% and 96%."""


MIRROR_RATIO = 2.0
"""``split-channel-order``: the larger split's median of each number over the other's, at most."""


def _channel_order(pair: tuple[_Split, _Split], source: str) -> list[Finding]:
    return channel_order(
        {s.name: [i.balance for i in s.items if i.balance is not None] for s in pair}, source
    )


def channel_order(splits: dict[str, Sequence[tuple[float, float]]], source: str) -> list[Finding]:
    """``split-channel-order``: one split's RGB images look like the other's with red and blue
    swapped (BGR, as OpenCV reads and writes them).

    Both numbers of :func:`channel_balance` must have one sign in at least
    :data:`CHANNEL_SIGN_SHARE` of one split's images and the opposite sign in as many of the
    other's, with medians of the same size (within a factor :data:`MIRROR_RATIO`: swapping red
    and blue negates both numbers and keeps their size). A stain or white-balance shift between
    sources can move the red/blue balance, but rarely flips both numbers into each other's mirror
    image. (A two-sample KS test of one split against the other's negated values was too strict:
    8 CamVid scenes from another part of the video differ in these numbers by a third, D = 0.75.)

    Example:
        >>> rgb = [(-0.14 + 0.01 * k, 0.11 + 0.005 * k) for k in range(8)]
        >>> bgr = [(-a, -b) for a, b in rgb]
        >>> [f.id for f in channel_order({"train": rgb, "val": bgr}, "folders")]
        ['split-channel-order']
        >>> channel_order({"train": rgb, "val": rgb[::-1]}, "folders")
        []
    """
    (first, a), (second, b) = splits.items()
    if min(len(a), len(b)) < MIN_PER_SPLIT:
        return []
    evidence: dict = {"split": source}
    lines = {first: [], second: []}
    for k, what in enumerate(("(mean red - mean blue) / spread", "log(std blue / std red)")):
        va, vb = np.array([x[k] for x in a]), np.array([x[k] for x in b])
        sign = float(np.sign(np.median(va)))
        if sign == 0:
            return []
        share_a, share_b = np.mean(np.sign(va) == sign), np.mean(np.sign(vb) == -sign)
        sizes = sorted(abs(float(np.median(v))) for v in (va, vb))
        if min(share_a, share_b) < CHANNEL_SIGN_SHARE or sizes[1] > MIRROR_RATIO * sizes[0]:
            return []
        for name, v in ((first, va), (second, vb)):
            lines[name].append(f"{what}: {_describe(v)}, {np.mean(v > 0):.0%} of {len(v)} above 0")
    evidence |= {name: "; ".join(v) for name, v in lines.items()}
    return [make_finding("split-channel-order", evidence, other=second, reference=first)]


SCALE_MISMATCH = 10.0
"""``split-intensity-shift`` is an error, variant ``scale``, when one split's median per-image
standard deviation is this many times the other's: one split is scaled differently (validation
left in 0..255 while training is divided by 255: about 250x in the second blind test,
2026-12-07). An offset does not change the spread; a shift of source or stain stays a warning
(the same blind test's colour images after fluorescence ones: 2x)."""


def intensity_shift(splits: dict[str, dict[str, Sequence[float]]], source: str) -> list[Finding]:
    """``split-intensity-shift`` from per-image intensity means and standard deviations.

    Args:
        splits: two splits, ``{name: {"mean": [...], "std": [...]}}`` (one value per image).
        source: where the splits come from (the evidence's ``split``).

    Example:
        >>> a = {"mean": [0.10, 0.12, 0.11, 0.13, 0.10, 0.14, 0.09, 0.12], "std": [0.05] * 8}
        >>> b = {"mean": [30.0, 35.0, 28.0, 31.0, 33.0, 29.0, 36.0, 30.0], "std": [12.0] * 8}
        >>> [(f.id, f.severity) for f in intensity_shift({"training": a, "validation": b}, "batches")]
        [('split-intensity-shift', 'error')]
        >>> z = {"mean": [0.0] * 8, "std": [1.0] * 8}  # whole images z-scored per image
        >>> crops = {"mean": [0.2, -0.3, 0.1, 0.25, -0.15, 0.3, -0.2, 0.05], "std": [0.9] * 8}
        >>> intensity_shift({"training": crops, "validation": z}, "batches")
        []
    """
    (first, a), (second, b) = splits.items()
    if min(len(a["std"]), len(b["std"])) < MIN_PER_SPLIT:
        return []
    stds = [abs(float(np.median(v))) for v in (a["std"], b["std"])]
    found = {}
    for key in ("mean", "std"):
        vals = [list(a[key]), list(b[key])]
        if min(len(v) for v in vals) < MIN_PER_SPLIT:
            return []
        d, p = _ks(vals[0], vals[1])
        medians = [abs(float(np.median(v))) for v in vals]
        # Relative to the larger median, or to the intensity spread when the means are near 0
        # (images z-scored per image, as segdoctor's loader feeds them: means of 0.001 and 0.05
        # differ 50x and by nothing that matters against a spread of 1).
        scale = max(*medians, *(stds if key == "mean" else ()), 1e-12)
        rel = abs(medians[0] - medians[1]) / scale
        if d >= SHIFT_KS_MIN and p < SHIFT_P_MAX and rel >= INTENSITY_REL_DIFF:
            found[key] = (d, p, vals, medians)
    if not found:
        return []
    key = max(found, key=lambda k: found[k][0])
    d, p, vals, _ = found[key]
    evidence: dict = {"split": source, "statistic": f"per-image intensity {key}"}
    for v, name in zip(vals, (first, second), strict=True):
        evidence[name] = f"image {key} " + _describe(v)
    evidence |= {"ks_statistic": round(d, 3), "ks_p": float(f"{p:.3g}")}
    ratio = max(stds) / max(min(stds), 1e-12)  # an offset leaves the spread alone; a scale not
    if ratio >= SCALE_MISMATCH:
        evidence["scale_ratio"] = round(ratio, 1)
        larger = (first, second)[int(np.argmax(stds))]
        return [
            make_finding(
                "split-intensity-shift",
                evidence,
                variant="scale",
                severity="error",
                larger=larger,
                ratio=ratio,
            )
        ]
    return [make_finding("split-intensity-shift", evidence)]


def _photometric(index, splits: list[_Split]) -> list[list[tuple[str, str]]]:
    """Groups ``[(split, name), (split, name)]``: an image of another split that is a copy of a
    reference-split image with its brightness, contrast or colour changed (:mod:`near_copies`).
    Flipped or identical copies are left to the hashes."""
    paths = {p.name: p.image for p in getattr(index, "pairs", ())}
    ref = splits[0]

    def reader(items: list[PairStats]):
        def read(i: int) -> np.ndarray | None:
            path = paths.get(items[i].name)
            try:
                return None if path is None else read_image(path)
            except (SegdoctorError, OSError, ValueError):
                return None

        return read

    groups = []
    ref_hashes = {item.oriented for item in ref.items if item.oriented is not None}
    for other in splits[1:]:
        queries = [
            None if it.oriented in ref_hashes else it.thumb for it in other.items
        ]  # already found as an identical or flipped copy
        refs = [it.thumb for it in ref.items]
        for qi, ri, _ in photometric_copies(queries, refs, reader(other.items), reader(ref.items)):
            groups.append([(ref.name, ref.items[ri].name), (other.name, other.items[qi].name)])
    return groups


def _duplicates(
    splits: list[_Split],
    source: str,
    declared: bool,
    photometric: list[list[tuple[str, str]]] = (),  # type: ignore[assignment]
) -> list[Finding]:
    by_digest: dict[str, list[tuple[str, str]]] = {}
    by_orientation: dict[str, list[tuple[str, str]]] = {}
    by_name: dict[str, list[tuple[str, str | None]]] = {}
    for split in splits:
        for item in split.items:
            if item.std == 0:  # blank images: input-constant says so, they hold nothing to leak
                continue
            if item.digest is not None:
                by_digest.setdefault(item.digest, []).append((split.name, item.name))
            if item.oriented is not None:
                by_orientation.setdefault(item.oriented, []).append((split.name, item.name))
            by_name.setdefault(item.name, []).append((split.name, item.digest))
    groups = [g for g in by_digest.values() if len(g) > 1]
    # across splits, a flipped or rotated copy leaks as much as an identical one; within a split
    # (offline augmentation of the training images, done right) only identical pixels count
    across = [g for g in by_orientation.values() if len({s for s, _ in g}) > 1]
    identical = {frozenset(g) for g in by_digest.values()}
    flipped_only = sum(frozenset(g) not in identical for g in across)
    across += list(photometric)
    same_name = [  # one name in two splits with different pixels (same pixels: in `across`)
        n for n, g in sorted(by_name.items()) if len({s for s, _ in g}) > 1 and len(set(g)) > 1
    ]
    if not (groups or same_name or across):
        return []
    chosen = across or groups
    evidence: dict = {"split": source}
    for split in splits:
        copies = {n for g in across for s, n in g if s == split.name}
        evidence[split.name] = f"{len(copies)} of {split.n} images have a copy in another split"
    evidence |= {
        "groups": [[f"{s}:{n}" for s, n in g] for g in chosen[:5]],
        "count": len(chosen),
        "same_name_different_pixels": same_name[:10],
        "groups_flipped_or_rotated": flipped_only,
        "groups_brightness_or_colour_changed": len(photometric),
        "across_existing_splits": bool(across) and declared,
    }
    if across:
        severity, variant = "error", None
    elif same_name:
        severity, variant = "warning", "same-name"
    elif declared:
        severity, variant = "warning", "within-split"
    else:
        severity, variant = "warning", "unsplit"
    return [make_finding("duplicate-across-splits", evidence, variant=variant, severity=severity)]


def _overlaps(splits: list[_Split], source: str, declared: bool) -> list[Finding]:
    """Images of the reference split and of another that share a region (not identical ones)."""
    items = [(s.name, item) for s in splits for item in s.items]
    side = {name: i for i, name in enumerate(s.name for s in splits)}
    found = [
        o
        for o in find_overlaps([it.blocks for _, it in items], [side[s] for s, _ in items])
        if 0 in (side[items[o.a][0]], side[items[o.b][0]])  # one side is the reference
        and not (items[o.a][1].digest and items[o.a][1].digest == items[o.b][1].digest)
    ]
    if not found:
        return []
    ref = splits[0].name
    covered = _shared_pixels(found, items, ref)
    evidence: dict = {"split": source}
    leaks = {}
    for s in splits[1:]:
        idx = [i for i, (name, it) in enumerate(items) if name == s.name and it.blocks]
        total = sum(int(np.prod(items[i][1].blocks.shape)) for i in idx)  # type: ignore[union-attr]
        leaks[s.name] = sum(int(covered[i].sum()) for i in idx if i in covered) / max(total, 1)
        evidence[s.name] = (
            f"{sum(i in covered for i in idx)} of {s.n} images share a region with {ref} images: "
            f"{leaks[s.name]:.0%} of the split's pixels"
        )
    touched = {i for o in found for i in (o.a, o.b) if items[i][0] == ref}
    evidence[ref] = f"{len(touched)} of {splits[0].n} images share a region with another split"
    evidence |= {
        "pairs": [
            f"{items[o.a][0]}:{items[o.a][1].name} ~ {items[o.b][0]}:{items[o.b][1].name} "
            f"({o.share:.0%} of the smaller image, offset {o.offset[0]},{o.offset[1]})"
            for o in found[:5]
        ],
        "count": len(found),
        "shared_pixels": round(max(leaks.values()), 4),
    }
    prefixes = [group_key(Pair(item.name, Path(), Path()), "prefix") for _, item in items]
    by_prefix = len(set(prefixes)) >= MIN_PER_SPLIT and all(
        prefixes[o.a] == prefixes[o.b] for o in found
    )
    group = (
        "the tiles' names start with their source's name: --set data.group_by=prefix keeps each "
        "source on one side"
        if by_prefix
        else "give each tile its source image as a group (a CSV group column, or a name pattern "
        "with --set data.group_by=REGEX)"
    )
    severity = "error" if declared and max(leaks.values()) >= LEAK_ERROR else "warning"
    variant = None if declared else "unsplit"
    return [
        make_finding(
            "overlap-across-splits", evidence, variant=variant, severity=severity, group=group
        )
    ]


def _shared_pixels(found: list, items: list, ref: str) -> dict[int, np.ndarray]:
    """Per image outside the reference split that shares a region: which of its pixels do."""
    covered: dict[int, np.ndarray] = {}
    for o in found:
        other, (top, left, bottom, right) = o.a, o.box
        if items[o.a][0] == ref:  # the box is in a's coordinates: move it into b's
            other, (dy, dx) = o.b, o.offset
            top, left, bottom, right = top + dy, left + dx, bottom + dy, right + dx
        shape = items[other][1].blocks.shape
        covered.setdefault(other, np.zeros(shape, bool))[top:bottom, left:right] = True
    return covered


def discovery_findings(index) -> list[Finding]:
    """Name clashes and unsupported files that lenient discovery went past, each with its files.

    ``segdoctor train`` (strict discovery) stops on a name clash; the doctor reports it instead.
    Same-name pairs in two splits are reported by ``duplicate-across-splits``.

    Example:
        >>> from pathlib import Path
        >>> from segdoctor.data import PairIndex
        >>> index = PairIndex([], [], [], "folder-pairs", Path("."), ignored=["images/a.gif"])
        >>> [f.id for f in discovery_findings(index)]
        ['unsupported-file']
    """
    found = []
    clashes = [
        c
        for c in index.clashes
        if c.kind != "same-name" or len(set(c.splits)) < len(c.splits)  # within one split
    ]
    if clashes:
        found.append(
            make_finding(
                "name-clash",
                {
                    "clashes": [c.describe() for c in clashes[:10]],
                    "count": len(clashes),
                    "used": [c.files[0] for c in clashes[:10] if c.kind != "same-name"],
                },
            )
        )
    if index.ignored:
        found.append(
            make_finding(
                "unsupported-file",
                {"files": list(index.ignored[:10]), "count": len(index.ignored)},
            )
        )
    return found
