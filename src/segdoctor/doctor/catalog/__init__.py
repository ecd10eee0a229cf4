"""The catalog of finding ids: stable names, default severity, title and documentation anchor.

Ids never change meaning once released; the troubleshooting guide (``docs/troubleshooting.md``) has
one section per id, with the symptom, the cause, how it is detected and the fix. An id whose check is
not implemented yet stays in the catalog with ``implemented=False`` so that no report can mention a
check that cannot fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segdoctor.doctor.findings import Finding
from segdoctor.errors import ConfigError, did_you_mean

DOCS_PAGE = "docs/troubleshooting.md"


@dataclass(frozen=True)
class CatalogEntry:
    """What one finding id means.

    Attributes:
        id: the stable id.
        category: ``"data"``, ``"model"``, ``"loss"``, ``"probe"`` or ``"history"``.
        severity: default severity.
        title: default one-line title.
        implemented: whether a check can emit this id in this version.
    """

    id: str
    category: str
    severity: str
    title: str
    implemented: bool = True

    @property
    def anchor(self) -> str:
        """Link to the section of the troubleshooting guide, e.g. ``docs/troubleshooting.md#plateau``."""
        return f"{DOCS_PAGE}#{self.id}"


_ENTRIES: tuple[CatalogEntry, ...] = (
    # Data ---------------------------------------------------------------------------------------
    CatalogEntry("mask-scale-255", "data", "error", "Masks are stored as 0/255, not 0/1"),
    CatalogEntry(
        "mask-fractional", "data", "error", "Masks have in-between values (interpolated or JPEG)"
    ),
    CatalogEntry(
        "mask-lossy-format",
        "data",
        "error",
        "Masks are stored as JPEG (lossy): label values change at object borders",
    ),
    CatalogEntry(
        "mask-instance-labels",
        "data",
        "error",
        "Masks are instance labels (1..N objects), not classes",
    ),
    CatalogEntry(
        "mask-rgb-palette", "data", "error", "Masks are RGB colour images, not class indices"
    ),
    CatalogEntry(
        "mask-foreground-majority",
        "data",
        "warning",
        "Foreground covers most of the image: labels may be inverted",
    ),
    CatalogEntry(
        "pair-missing", "data", "warning", "Images without masks (or masks without images)"
    ),
    CatalogEntry("pair-shape-mismatch", "data", "error", "Image and mask sizes differ"),
    CatalogEntry(
        "pair-misaligned",
        "data",
        "error",
        "Mask boundaries do not follow image edges: image and mask misaligned",
    ),
    CatalogEntry("empty-masks", "data", "warning", "Many masks are empty"),
    CatalogEntry(
        "class-imbalance", "data", "warning", "Foreground is a tiny fraction of the pixels"
    ),
    CatalogEntry("class-absent", "data", "warning", "A class never appears in the masks"),
    CatalogEntry("mask-invalid-values", "data", "error", "Mask values that are not class indices"),
    CatalogEntry(
        "input-not-normalized",
        "data",
        "warning",
        "Model inputs are not scaled (0..255 fed to the network)",
    ),
    CatalogEntry("input-constant", "data", "error", "Constant images (no information)"),
    CatalogEntry(
        "duplicate-across-splits", "data", "error", "The same image is in training and validation"
    ),
    CatalogEntry("unreadable-file", "data", "error", "Files that cannot be read"),
    CatalogEntry(
        "split-class-absent",
        "data",
        "error",
        "A class is present in one split and absent from the other",
    ),
    CatalogEntry(
        "split-empty-masks",
        "data",
        "warning",
        "The splits have very different shares of empty masks",
    ),
    CatalogEntry(
        "split-object-size",
        "data",
        "warning",
        "Objects are much larger in one split than the other",
    ),
    CatalogEntry(
        "split-intensity-shift",
        "data",
        "warning",
        "Image intensities of the splits come from different distributions",
    ),
    CatalogEntry("name-clash", "data", "error", "Files share a name: the pairing is ambiguous"),
    CatalogEntry(
        "unsupported-file", "data", "warning", "Files of a type segdoctor cannot read were skipped"
    ),
    CatalogEntry(
        "image-range-narrow",
        "data",
        "warning",
        "16-bit images use a small part of their range (e.g. 12-bit data in 16-bit files)",
    ),
    CatalogEntry(
        "image-mixed-bit-depth",
        "data",
        "warning",
        "Images of different bit depths mixed (e.g. 16-bit TIFFs among 8-bit PNGs)",
    ),
    CatalogEntry(
        "image-mixed-channels",
        "data",
        "warning",
        "Images with and without an alpha channel mixed (e.g. RGBA among gray)",
    ),
    CatalogEntry("image-alpha", "data", "warning", "Alpha channel with real transparency"),
    CatalogEntry(
        "image-intensity-outlier",
        "data",
        "warning",
        "Images whose brightness or contrast is far from the rest",
    ),
    # Model and compile --------------------------------------------------------------------------
    CatalogEntry(
        "monitor-mode", "model", "error", "A callback watches Dice/IoU in the wrong direction"
    ),
    CatalogEntry(
        "softmax-single-channel", "model", "error", "Softmax over a single channel always outputs 1"
    ),
    CatalogEntry(
        "output-activation-missing",
        "model",
        "error",
        "The model outputs logits but the loss expects probabilities",
    ),
    CatalogEntry(
        "from-logits-mismatch",
        "model",
        "error",
        "from_logits=True on a model that outputs probabilities",
    ),
    CatalogEntry(
        "activation-loss-mismatch", "model", "error", "Output activation and loss do not match"
    ),
    CatalogEntry(
        "loss-not-differentiable",
        "loss",
        "error",
        "The loss has zero gradient (thresholding inside the loss)",
    ),
    CatalogEntry(
        "loss-wrong-direction",
        "loss",
        "error",
        "The loss rewards wrong predictions (a metric passed as the loss)",
    ),
    CatalogEntry(
        "loss-background-dominated",
        "loss",
        "error",
        "Missing the objects barely changes the loss: background dominates",
    ),
    CatalogEntry(
        "output-classes-mismatch",
        "model",
        "error",
        "Output channels do not match the classes in the masks",
    ),
    CatalogEntry(
        "output-channels-extra",
        "model",
        "warning",
        "The model outputs more channels than the masks have classes",
    ),
    CatalogEntry(
        "output-activation-unsuited",
        "model",
        "error",
        "The output activation is neither a probability nor a logit (relu, tanh, ...)",
    ),
    CatalogEntry(
        "input-channels-mismatch",
        "model",
        "warning",
        "Image channels differ from the model's input channels",
    ),
    CatalogEntry(
        "dice-smooth-large",
        "loss",
        "warning",
        "Dice smoothing is large: an empty prediction of a small object scores well",
    ),
    CatalogEntry(
        "dice-batch-pooled",
        "loss",
        "warning",
        "Dice is pooled over the batch: small objects are ignored",
    ),
    CatalogEntry(
        "dice-empty-penalized",
        "loss",
        "warning",
        "A correct empty prediction on an empty mask is penalized",
    ),
    CatalogEntry(
        "dice-includes-background", "loss", "info", "Dice averages in the background class"
    ),
    CatalogEntry("dropout-high", "model", "warning", "Dropout rate is high"),
    CatalogEntry(
        "batchnorm-small-batch", "model", "warning", "BatchNormalization with a very small batch"
    ),
    CatalogEntry(
        "weight-decay-high", "model", "warning", "Weight decay / L2 regularization is high"
    ),
    CatalogEntry("bad-init", "model", "warning", "Weights initialised with an unsuitable scale"),
    # Probes -------------------------------------------------------------------------------------
    CatalogEntry(
        "init-loss-anomaly",
        "probe",
        "warning",
        "The loss at initialisation is far from its expected value",
    ),
    CatalogEntry(
        "cannot-overfit",
        "probe",
        "error",
        "A handful of samples cannot be fitted",
    ),
    CatalogEntry(
        "lr-too-high", "probe", "error", "The learning rate is above the divergence point"
    ),
    CatalogEntry(
        "lr-too-low", "probe", "warning", "The learning rate is far below the useful range"
    ),
    CatalogEntry("dead-relu", "probe", "warning", "Many ReLU units never activate"),
    CatalogEntry(
        "vanishing-gradients",
        "probe",
        "warning",
        "Gradients of the first layers are vanishingly small",
    ),
    CatalogEntry("exploding-gradients", "probe", "error", "Gradients are exploding"),
    CatalogEntry("nan-loss", "probe", "error", "The loss becomes NaN or infinite"),
    CatalogEntry(
        "bn-train-infer-gap",
        "probe",
        "warning",
        "BatchNorm behaves very differently in training and inference",
    ),
    CatalogEntry(
        "batch-size-noisy",
        "probe",
        "info",
        "The gradient noise scale is far above the batch size",
    ),
    # History ------------------------------------------------------------------------------------
    CatalogEntry(
        "overfitting", "history", "warning", "Validation gets worse while training improves"
    ),
    CatalogEntry("underfitting", "history", "warning", "Training Dice itself stays low"),
    CatalogEntry("plateau", "history", "warning", "Validation Dice stopped improving"),
    CatalogEntry(
        "loss-oscillation", "history", "warning", "Training loss oscillates instead of decreasing"
    ),
    CatalogEntry(
        "prediction-collapse",
        "history",
        "error",
        "The model predicts everything as background (or foreground)",
    ),
    CatalogEntry(
        "lr-reduced-while-improving",
        "history",
        "error",
        "Learning rate was cut while Dice was still rising",
    ),
    CatalogEntry("metric-constant", "history", "error", "A metric never changes"),
    CatalogEntry("val-better-than-train", "history", "info", "Validation is better than training"),
)

CATALOG: dict[str, CatalogEntry] = {entry.id: entry for entry in _ENTRIES}


def implemented_ids() -> list[str]:
    """Ids that some check in this version can emit."""
    return [entry.id for entry in _ENTRIES if entry.implemented]


def get_entry(finding_id: str) -> CatalogEntry:
    """Look up a catalog entry; unknown ids raise ConfigError with a suggestion."""
    try:
        return CATALOG[finding_id]
    except KeyError:
        raise ConfigError(
            f"Unknown finding id {finding_id!r}",
            expected="an id of segdoctor.doctor.CATALOG",
            received=repr(finding_id),
            fix=f"use a catalog id.{did_you_mean(finding_id, CATALOG)}".strip(),
        ) from None


def make_finding(
    finding_id: str,
    evidence: dict[str, Any],
    fix: str,
    *,
    title: str | None = None,
    severity: str | None = None,
    confidence: float = 1.0,
) -> Finding:
    """Build a Finding with the catalog's defaults for title and severity.

    Example:
        >>> make_finding("plateau", {"epochs_without_gain": 12}, "lower the LR").severity
        'warning'
    """
    entry = get_entry(finding_id)
    return Finding(
        id=finding_id,
        severity=severity or entry.severity,
        title=title or entry.title,
        evidence=evidence,
        fix=fix,
        confidence=confidence,
    )
