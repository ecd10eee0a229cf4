"""Checks on the first training batches as the model sees them (after the user's pipeline).

These catch what a data folder cannot show: masks or images changed by the user's own loading and
augmentation code (0/255 masks, unscaled inputs, image-only augmentation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from segdoctor.doctor._probe_model import loss_ignore_index
from segdoctor.doctor.alignment import (
    MISALIGNED_BELOW,
    NOISE_LIKE_BELOW,
    alignment_score,
    best_offset,
    misaligned,
    offset_finding,
    structure_score,
)
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.model_checks import (
    all_layers,
    check_batchnorm_batch,
    input_channels,
    output_activation,
    output_channels,
)
from segdoctor.doctor.model_data import (
    VOID_LABEL,
    Targets,
    compare_input_channels,
    compare_output_classes,
    targets_from_batch,
    uses_void_label,
)
from segdoctor.doctor.outlines import outline_counts, outline_evidence, outlines_found
from segdoctor.doctor.receptive_field import interior_object_area

_SCALING_LAYERS = ("Rescaling", "Normalization")


def _has_scaling(model) -> bool:
    return any(type(layer).__name__ in _SCALING_LAYERS for layer in all_layers(model))


def augment_value_range(model, x_min: float, x_max: float) -> list[Finding]:
    """``augment-value-range``: layers with a ``value_range`` (Keras' ``RandomBrightness``,
    ``RandomContrast``, colour jitter...) whose range does not hold the inputs: inputs at most
    1 for a range reaching 100 or more (the layers' default is (0, 255)), or inputs above 2 for
    a range of at most 1. Models that rescale their inputs first are left alone (the range
    applies to the rescaled values). Fourth blind test: ``RandomBrightness(0.2)`` and
    ``RandomContrast(0.2)`` at their default range on images in [0, 1]: validation Dice 0.000
    in every epoch, against 0.785 with ``value_range=(0, 1)``.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomBrightness(0.2)])
        >>> [f.id for f in augment_value_range(m, 0.0, 1.0)], augment_value_range(m, 0.0, 255.0)
        (['augment-value-range'], [])
    """
    wrong = [
        (name, (lo, hi))
        for name, (lo, hi) in _value_ranges(model)
        if (x_max <= 1.0 + 1e-3 and hi >= 100.0) or (x_max > 2.0 and hi <= 1.0)
    ]
    if not wrong:
        return []
    evidence = {
        "layers": [name for name, _ in wrong],
        "value_range": list(wrong[0][1]),
        "input_min": x_min,
        "input_max": x_max,
        "where": "training batch",
    }
    return [
        make_finding(
            "augment-value-range",
            evidence,
            layers=", ".join(name for name, _ in wrong),
            value_range=tuple(wrong[0][1]),
        )
    ]


def _value_ranges(model) -> list[tuple[str, tuple[float, float]]]:
    """``(description, value_range)`` of the layers with a ``value_range``; none when the model
    rescales its inputs first (the range then applies to the rescaled values)."""
    if _has_scaling(model):
        return []
    out = []
    for layer in all_layers(model):
        vr = getattr(layer, "value_range", None)
        if not isinstance(vr, (tuple, list)) or len(vr) != 2:
            continue
        try:
            out.append((f"{type(layer).__name__} {layer.name!r}", (float(vr[0]), float(vr[1]))))
        except (TypeError, ValueError):
            continue
    return out


def augment_range_if_failed(model, failed: Sequence[str]) -> list[Finding]:
    """``augment-value-range`` (warning, variant ``unknown-inputs``) for the command line, which
    does not see the inputs as the model receives them: layers at Keras' default range
    (0, 255) in a model whose history says it never learned (``failed``: the ids of the errors
    that say so, e.g. ``metric-constant``). The fourth blind test's F3 (images in [0, 1]) drew
    only the symptoms from the command line.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomContrast(0.2)])
        >>> [f.severity for f in augment_range_if_failed(m, ["metric-constant"])], augment_range_if_failed(m, [])
        (['warning'], [])
    """
    wide = [(name, vr) for name, vr in _value_ranges(model) if vr[1] >= 100.0]
    if not failed or not wide:
        return []
    evidence = {
        "layers": [name for name, _ in wide],
        "value_range": list(wide[0][1]),
        "history": sorted(set(failed)),
        "where": "model file (the inputs are not seen from the command line)",
    }
    return [
        make_finding(
            "augment-value-range",
            evidence,
            variant="unknown-inputs",
            severity="warning",
            layers=", ".join(name for name, _ in wide),
            value_range=tuple(wide[0][1]),
        )
    ]


MIN_STRUCTURE = 4
"""Fewest scored samples whose neighbour correlation ``inputs-noise-like`` judges."""


@dataclass
class AlignmentSamples:
    """Per-sample edge alignment pooled over batches: scores
    (:func:`~segdoctor.doctor.alignment.alignment_score`) and best shifts
    (:func:`~segdoctor.doctor.alignment.best_offset`, named ``batch B sample I``), the
    neighbour correlation of the scored images (:func:`~segdoctor.doctor.alignment.structure_score`),
    per sample the outlines among its mask's components
    (:func:`~segdoctor.doctor.outlines.outline_counts`) and the size of its whole objects
    (:func:`~segdoctor.doctor.receptive_field.interior_object_area`, binary targets)."""

    scores: list[float] = field(default_factory=list)
    structure: list[float] = field(default_factory=list)
    outlines: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)  # interior_object_area, binary targets
    offsets: list[tuple[str, tuple[tuple[int, int], float] | None]] = field(default_factory=list)
    batches: int = 0


def repeated_batches_finding(digests: Sequence[tuple[int, str]]) -> list[Finding]:
    """``batches-repeat``: two or more training batches of one epoch that are pixel-identical
    (images and targets); ``digests``: ``(epoch, content hash of the batch)`` per peeked step.

    Example:
        >>> repeated_batches_finding([(1, "a"), (1, "a"), (1, "a")])[0].id
        'batches-repeat'
        >>> repeated_batches_finding([(1, "a"), (1, "b"), (2, "a")])
        []
    """
    steps: dict[tuple[int, str], list[int]] = {}
    for step, (epoch, digest) in enumerate(digests, start=1):
        steps.setdefault((epoch, digest), []).append(step)
    repeats = [(epoch, s) for (epoch, _), s in steps.items() if len(s) > 1]
    if not repeats:
        return []
    epoch, same = repeats[0]
    evidence = {
        "epoch": epoch,
        "identical_steps": same,
        "steps_compared": sum(e == epoch for e, _ in digests),
    }
    return [make_finding("batches-repeat", evidence, steps=", ".join(map(str, same)))]


def alignment_finding(
    samples: AlignmentSamples, where: str = "training batches", *, later: bool = False
) -> list[Finding]:
    """``pair-misaligned`` from the edge-alignment scores of at least 4 samples,
    ``mask-offset`` when a group of them is shifted by one amount, and ``mask-outlines`` when
    the masks draw their objects' boundaries (:func:`~segdoctor.doctor.outlines.outlines_found`).

    The rule is :func:`~segdoctor.doctor.alignment.misaligned` (a low median, or a quarter of
    8 or more samples low: augmentation applied to the images only misaligns 50-75% of them).
    ``later``: the samples are a later epoch's, after the first epoch's were aligned (variant
    ``later-epoch``: the dataset breaks the pairing between epochs).

    Images that look like noise (median neighbour correlation below
    :data:`~segdoctor.doctor.alignment.NOISE_LIKE_BELOW`) have no edges for a mask to follow:
    instead of either finding, ``inputs-noise-like`` (their values were mangled before the pairing
    could be judged; fifth blind test, F6: 12-bit images cast with ``astype(np.uint8)``).
    """
    outlined = []
    if outlines_found([counts for _, counts in samples.outlines]):
        evidence = outline_evidence(samples.outlines, where)
        outlined = [make_finding("mask-outlines", evidence, variant="batch")]
    return outlined + _pairing_findings(samples, where, later=later)


def _pairing_findings(samples: AlignmentSamples, where: str, *, later: bool) -> list[Finding]:
    shifted = offset_finding(samples.offsets, where)
    found, median, low = misaligned(samples.scores)
    if not found and not shifted:
        return []
    structure = samples.structure
    if len(structure) >= MIN_STRUCTURE and float(np.median(structure)) < NOISE_LIKE_BELOW:
        evidence = {
            "median_neighbour_correlation": float(np.median(structure)),
            "threshold": NOISE_LIKE_BELOW,
            "samples": len(structure),
            "where": where,
            "median_alignment_score": median,
        }
        return [make_finding("inputs-noise-like", evidence, confidence=0.7)]
    if not found:
        return shifted
    return [
        *shifted,
        make_finding(
            "pair-misaligned",
            {
                "median_alignment_score": median,
                "misaligned_fraction": low,
                "threshold": MISALIGNED_BELOW,
                "samples": len(samples.scores),
                "where": where,
            },
            variant="later-epoch" if later else "batch",
            confidence=0.8,
        ),
    ]


def _model_vs_batch(model, x, y, targets_out: list[Targets] | None) -> list[Finding]:
    """Input channels and output classes of the model against one batch (see model_data)."""
    where = "training batch"
    found = compare_input_channels(
        input_channels(model), {int(x.shape[-1]): len(x)}, where=where, fed_as_is=True
    )
    targets = targets_from_batch(y, source=where)
    final = targets_out is None
    if targets is not None and not final:
        targets_out.append(targets)
    found += compare_output_classes(
        output_channels(model),
        targets,
        activation=output_activation(model),
        final=final,
        ignore_index=loss_ignore_index(model),
    )
    return found


def classes_finding(model, seen: list[Targets], where: str) -> list[Finding]:
    """``output-channels-extra`` (and the rest of :func:`compare_output_classes`) over batches.

    Example:
        >>> classes_finding(model, [Targets(max_label=1, images=8)], "first 3 batches")  # doctest: +SKIP
    """
    if not seen:
        return []
    pooled = seen[0]
    for more in seen[1:]:
        pooled = pooled.merged(more)
    ignore = loss_ignore_index(model)
    gap = class_gap_findings(pooled, ignore, where)
    pooled = Targets(pooled.max_label, pooled.one_hot_depth, pooled.images, where)
    return gap + compare_output_classes(
        output_channels(model),
        pooled,
        activation=output_activation(model),
        final=True,
        ignore_index=ignore,
    )


GAP_MIN_MASKS = 16
"""Sparse training masks ``class-absent`` (variant ``batch``) needs before it judges a gap..."""
GAP_PRESENT_SHARE = 0.5
"""...and the share of them that every class present must appear in. A sample of batches may
miss a rare class; a class index missing while every other class is in half the masks or more is
no sampling accident (sixth blind test, F7: CamVid merged to 5 classes by a loop that chains, class
1 in none of 24 scenes, the others in all of them)."""


def class_gap_findings(targets: Targets, ignore_index: int | None, where: str) -> list[Finding]:
    """``class-absent`` (variant ``batch``): a class index between 1 and the largest label that
    no sampled training mask holds, while every class present is common.

    Example:
        >>> t = Targets(max_label=5, images=24, presence={0: 24, 2: 24, 3: 20, 4: 24, 5: 18})
        >>> [f.id for f in class_gap_findings(t, None, "first 3 training batches")]
        ['class-absent']
        >>> t = Targets(max_label=5, images=24, presence={0: 24, 2: 24, 3: 2, 4: 24, 5: 18})
        >>> class_gap_findings(t, None, "first 3 training batches")  # class 3 is rare: 1 may be too
        []
        >>> t = Targets(max_label=255, images=24, presence={0: 24, 1: 24, 255: 24})
        >>> class_gap_findings(t, None, "first 3 training batches")  # VOC's void label
        []
    """
    presence, images = targets.presence, targets.images
    if not presence or images < GAP_MIN_MASKS:
        return []
    labels = {c for c in presence if c != ignore_index}
    if uses_void_label(labels):  # 255 is the void label (VOC): not the largest class
        labels.discard(VOID_LABEL)
    if not labels:
        return []
    largest = max(labels)
    classes = [c for c in range(largest + 1) if c != ignore_index]
    absent = [c for c in classes if 0 < c < largest and not presence.get(c)]
    present = [c for c in classes if presence.get(c)]
    if not absent or not present:
        return []
    share = min(presence[c] for c in present) / images
    if share < GAP_PRESENT_SHARE:
        return []
    evidence = {
        "absent_classes": absent,
        "present": present,
        "least_present_share": round(share, 3),
        "masks_seen": images,
        "where": where,
    }
    return [make_finding("class-absent", evidence, variant="batch", confidence=0.8)]


DIVIDED_MAX_LABEL = 16
"""``mask-fractional`` names a second division by 255 when every target value is ``k / 255`` with
``k`` an integer up to this (class indices divided once too often), not a resize."""


def divided_by_255(values: np.ndarray) -> bool:
    """True when the distinct target values are class indices divided by 255 (``{0, 1/255}``).

    Example:
        >>> divided_by_255(np.array([0.0, 1 / 255], "float32"))
        True
        >>> divided_by_255(np.array([0.0, 0.25, 0.5, 1.0]))
        False
    """
    scaled = np.asarray(values, "float64") * 255.0
    k = np.round(scaled)
    return bool(
        len(values) <= DIVIDED_MAX_LABEL + 1
        and np.all(np.abs(scaled - k) < 1e-3)
        and 0 < float(k.max()) <= DIVIDED_MAX_LABEL
    )


def _fractional_finding(y: np.ndarray, values: np.ndarray) -> Finding:
    """``mask-fractional`` in a batch: masks divided by 255 twice, or interpolated."""
    evidence = {
        "fraction_of_pixels": float(np.mean(y != np.round(y))),
        "example_values": values[:8].tolist(),
        "where": "training batch",
    }
    if divided_by_255(values):
        k = round(float(values.max()) * 255)
        evidence["values_times_255"] = np.round(values[:8] * 255).astype(int).tolist()
        return make_finding(
            "mask-fractional", evidence, variant="divided-twice", foreground=values.max(), k=k
        )
    if len(values) <= FEW_LEVELS:
        # A few levels, not a ramp: labels read as gray levels (interpolation makes a ramp of
        # many values along every edge; fifth blind test: {0, 0.149} from a palette PNG).
        levels = ", ".join(f"{v:.3g}" for v in values)
        return make_finding("mask-fractional", evidence, variant="levels", levels=levels)
    return make_finding("mask-fractional", evidence, variant="batch")


FEW_LEVELS = 4
"""``mask-fractional`` in a batch whose targets hold at most this many distinct values (0
included) and are not labels divided by 255: variant ``levels`` (labels read as gray levels,
e.g. a palette PNG read with ``.convert('L')``) rather than interpolation, which leaves a ramp."""


def check_batch(
    x: np.ndarray,
    y: np.ndarray,
    model=None,
    *,
    alignment_out: AlignmentSamples | None = None,
    targets_out: list[Targets] | None = None,
) -> list[Finding]:
    """Findings from one batch ``x (B, H, W, C)``, ``y (B, H, W, 1)`` or one-hot ``(B, H, W, K)``.

    Args:
        x: inputs as the model receives them.
        y: targets as the loss receives them.
        model: the model (output channels, scaling layers, BatchNorm).
        alignment_out: when given, the per-sample alignment scores and best shifts are added
            to it and ``pair-misaligned`` and ``mask-offset`` are left to the caller
            (:func:`alignment_finding` over several batches); otherwise this batch alone decides.
        targets_out: when a list, the classes this batch holds (:class:`Targets`) are appended
            to it and ``output-channels-extra`` is left to the caller (over several batches,
            :func:`classes_finding`); otherwise this batch alone decides. Labels the head cannot
            output are reported at once either way.

    Example:
        >>> x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
        >>> y = np.zeros((2, 16, 16, 1)); y[:, 4:8, 4:8] = 255
        >>> [f.id for f in check_batch(x, y)]
        ['mask-scale-255']
    """
    x, y = np.asarray(x, dtype="float32"), np.asarray(y, dtype="float32")
    found: list[Finding] = []
    channels = None
    if model is not None:
        channels = output_channels(model)
        found += check_batchnorm_batch(model, len(x))  # no weights: on JAX they are in the step
    if y.shape[-1] == 1 or (channels is not None and y.shape[-1] != channels):
        found += _sparse_target_findings(y, channels)
    found += _input_findings(x, model)
    if model is not None:
        found += _model_vs_batch(model, x, y, targets_out)
        found += loss_vs_labels(model, y)
    fg = (y[..., 0] > 0) if y.shape[-1] == 1 else y.argmax(-1) > 0  # (B, H, W)
    # object sizes of binary targets only: the "foreground" of a scene's classes is one region
    binary = y.shape[-1] == 2 or (y.shape[-1] == 1 and bool(np.isin(y, (0.0, 1.0)).all()))
    samples = alignment_out if alignment_out is not None else AlignmentSamples()
    for i in range(len(x)):
        mask = fg[i].astype("int32")
        if (score := alignment_score(x[i], mask)) is not None:
            samples.scores.append(score)
            if (structure := structure_score(x[i])) is not None:
                samples.structure.append(structure)
        name = f"batch {samples.batches + 1} sample {i + 1}"
        samples.offsets.append((name, best_offset(x[i], mask)))
        samples.outlines.append((name, outline_counts(x[i], fg[i])))
        if binary and (area := interior_object_area(fg[i])) is not None:
            samples.areas.append(area)
    samples.batches += 1
    if alignment_out is None:  # else the caller pools several batches and decides
        found += alignment_finding(samples)
    return found


LABEL_LOGIT = 8.0
"""Logit of the right class (the others 0) in the perfect prediction given to a logit loss."""


def _loss_value(loss, y: np.ndarray, pred: np.ndarray) -> float | None:
    try:
        tensor = keras.ops.convert_to_tensor
        value = keras.ops.convert_to_numpy(loss(tensor(y), tensor(pred)))
        return float(np.mean(value))
    except Exception:  # a loss that cannot take this pair of shapes: say nothing rather than guess
        return None


def loss_vs_labels(model, y: np.ndarray) -> list[Finding]:
    """``loss-label-format``: class-index targets ``(B, H, W, 1)`` for a head of K > 1 channels,
    and a loss that does not score the right answer better than a wrong one.

    The compiled loss is evaluated on the batch's own targets against three predictions: the
    targets themselves as a K-channel prediction (one-hot, slightly smoothed; as logits for a
    linear head), the same for the next sample's targets (a wrong answer of the same kind), and a
    uniform prediction. A loss that reads class indices (sparse cross-entropy, segdoctor's Dice
    losses) scores the right answer lowest; one written for one-hot targets broadcasts the
    ``(B, H, W, 1)`` indices over the K channels and does not (blind test, 2026-12-07: a Dice
    loss from a Q&A answer on CamVid's 12 classes trained to Dice 0.03).
    """
    loss = getattr(model, "loss", None)
    k = output_channels(model)
    if loss is None or k < 2 or y.shape[-1] != 1 or len(y) < 2:
        return []
    labels = np.rint(y[..., 0]).astype(np.int64)
    if labels.min() < 0 or labels.max() >= k or np.any(y[..., 0] != labels):
        return []  # labels the head cannot output: output-classes-mismatch says so
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    onehot = np.eye(k, dtype="float32")[labels]  # (B, H, W, K)
    if output_activation(model) == "linear":
        right, wrong = LABEL_LOGIT * onehot, LABEL_LOGIT * np.roll(onehot, 1, axis=0)
        uniform = np.zeros_like(onehot)
    else:
        smooth = 0.02 / k
        right = onehot * (1 - 0.02) + smooth
        wrong, uniform = np.roll(right, 1, axis=0), np.full_like(onehot, 1.0 / k)
    values = [_loss_value(loss, y, p) for p in (right, wrong, uniform)]
    if any(v is None or not np.isfinite(v) for v in values):
        return []
    at_right, at_wrong, at_uniform = values
    if at_right < min(at_wrong, at_uniform) - 1e-3 * max(abs(at_right), 1e-6):
        return []
    evidence = {
        "targets_shape": list(y.shape),
        "output_channels": k,
        "loss_right_answer": at_right,
        "loss_next_samples_answer": at_wrong,
        "loss_uniform": at_uniform,
        "where": "training batch",
    }
    return [make_finding("loss-label-format", evidence, k=k)]


def _sparse_target_findings(y: np.ndarray, channels: int | None) -> list[Finding]:
    """Targets of class indices ``(B, H, W, 1)``: in-between values, 0/255, instance labels."""
    values = np.unique(y)
    if np.any(values != np.round(values)):
        return [_fractional_finding(y, values)]
    if set(values.tolist()) == {0.0, 255.0}:
        return [
            make_finding("mask-scale-255", {"values": values.tolist(), "where": "training batch"})
        ]
    if channels is not None and values.max() >= max(channels, 2) and len(values) > 16:
        evidence = {
            "distinct_values": len(values),
            "max_value": float(values.max()),
            "output_channels": channels,
            "where": "training batch",
        }
        return [make_finding("mask-instance-labels", evidence, variant="batch")]
    return []


def _input_findings(x: np.ndarray, model) -> list[Finding]:
    """``input-not-normalized`` and ``input-constant`` from the inputs ``(B, H, W, C)``."""
    found = []
    # Unscaled inputs look like raw intensities (0..255, 16-bit counts), not like standardized data:
    # a z-scored image with bright sparse objects can reach 10-20 but has negative values and std ~1.
    x_min, x_max, x_std = float(np.min(x)), float(np.max(x)), float(np.std(x))
    raw_looking = (x_min >= 0 and x_max > 20.0) or x_std > 20.0 or abs(float(np.mean(x))) > 20.0
    if raw_looking and (model is None or not _has_scaling(model)):
        evidence = {"input_min": x_min, "input_max": x_max, "where": "training batch"}
        found.append(make_finding("input-not-normalized", evidence))
    if model is not None:
        found += augment_value_range(model, x_min, x_max)
    constant = int(np.sum(np.ptp(x.reshape(len(x), -1), axis=1) == 0))
    if constant:
        found.append(
            make_finding(
                "input-constant",
                {"constant_images": constant, "batch": len(x), "where": "training batch"},
                variant="batch",
                severity="error" if constant > len(x) // 2 else "warning",
            )
        )
    return found
