"""The doctor's Python entry point, :func:`diagnose` (the command: :mod:`segdoctor.cli.diagnose`).

All three ways in (command, callback, function) produce the same :class:`Report` and JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segdoctor.doctor.batch_checks import augment_range_if_failed
from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.data_checks import check_data
from segdoctor.doctor.findings import Finding
from segdoctor.doctor.history import LR_KEYS, analyze_history, is_dice_like, load_history
from segdoctor.doctor.loss_probe import background_severity
from segdoctor.doctor.model_checks import check_model, check_model_vs_files
from segdoctor.doctor.plots import curves_png
from segdoctor.doctor.probes import load_probe_batch, run_probes
from segdoctor.doctor.receptive_field import receptive_field, receptive_field_findings
from segdoctor.doctor.report import Report
from segdoctor.doctor.saved_model import saved_model_findings
from segdoctor.doctor.update_ratio import probe_update_ratio
from segdoctor.errors import ModelLoadError, SegdoctorError
from segdoctor.runfiles import load_model as safe_load


def load_model(path: str | Path, *, safe_mode: bool = True):
    """Load a ``.keras`` model (or a run folder's best model) for the checks, compiled.

    The one safe loader of the project (:func:`segdoctor.runfiles.load_model`): Keras'
    ``safe_mode`` is on unless the user opts in, and a refused or broken file raises a
    :class:`ModelLoadError` that says why and names ``--unsafe``.
    """
    return safe_load(path, unsafe=not safe_mode, compile=True)


def _load_for_checks(path: str | Path, safe_mode: bool) -> tuple[Any, list[Finding]]:
    """The model compiled, or, when only its compiled parts (a custom loss or metric that is not
    registered) cannot be restored, the architecture alone with a ``model-loss-unavailable``
    finding: the checks that need no loss still run (third blind test: a plain-Keras model
    compiled with its own ``weighted_bce`` made ``--model`` exit 2)."""
    try:
        return load_model(path, safe_mode=safe_mode), []
    except ModelLoadError as err:
        compiled_error = err
    try:
        model = safe_load(path, unsafe=not safe_mode, compile=False)
    except ModelLoadError:
        raise compiled_error from None
    text = getattr(compiled_error, "received", None) or str(compiled_error)
    reason = text.split(". ")[0][:200]
    return model, [make_finding("model-loss-unavailable", {"model": str(path), "reason": reason})]


def diagnose(
    data: str | Path | None = None,
    model: Any = None,
    history: str | Path | Mapping[str, Sequence[float]] | None = None,
    probe: bool = False,
    *,
    callbacks: Sequence[Any] = (),
    batch_size: int | None = None,
    probe_size: int = 64,
    plots: bool = True,
    safe_mode: bool = True,
) -> Report:
    """Run every check that the given inputs allow and return one ranked report.

    Args:
        data: a data folder (data checks; streaming).
        model: a Keras model (compiled for loss checks) or a path to a ``.keras`` file.
        history: a CSVLogger file, a JSON dump of ``History.history``, or the dict.
        probe: run the probes (needs ``model`` and ``data``; a few seconds each at ``probe_size``).
        callbacks: the callbacks given to ``fit`` (``monitor-mode``).
        batch_size: the training batch size (``batchnorm-small-batch``, ``batch-size-noisy``).
        probe_size: side the probe images are resized to (models with a fixed input size use
            theirs); fully convolutional models are then probed on 64x64 crops of them.
        plots: attach plots (HTML report).
        safe_mode: load model files with Keras' safe mode.

    Returns:
        A :class:`Report`.

    Raises:
        DataError, ModelLoadError: an input cannot be used.

    Example:
        >>> r = diagnose(history={"loss": [0.5] * 5, "val_loss": [0.5] * 5})
        >>> r.ids
        ['metric-constant']
    """
    findings: list[Finding] = []
    summary: dict[str, Any] = {"checked": []}
    report = Report()
    data_summary = None
    if data is not None:
        findings, data_summary = _data_findings(data, summary, report if plots else None)
    if model is not None:
        if isinstance(model, (str, Path)):
            model, unloaded = _load_for_checks(model, safe_mode)
            findings += unloaded
        findings += check_model(
            model,
            callbacks,
            num_classes=data_summary.num_classes if data_summary else None,
            batch_size=batch_size,
        )
        if data_summary is not None:
            findings = _model_vs_data(model, data, data_summary, findings)
        summary["checked"].append("model")
    if history is not None:
        findings += _history_findings(history, summary, report if plots else None)
        if model is not None and data is not None:  # the file against its own best epoch
            differs = sorted({f.id for f in findings} & READING_DIFFERS)
            if differs:
                summary["saved_model_skipped"] = (
                    f"not scored: the data has {', '.join(differs)}, so the doctor's reading of "
                    "the images or masks may not be the one the model was trained on"
                )
            else:
                findings += saved_model_findings(model, data, load_history(history))
        failed = [f.id for f in findings if f.id in NEVER_LEARNED and f.severity == "error"]
        if model is not None:  # augmentation ranges, when the history says nothing was learned
            findings += augment_range_if_failed(model, failed)
        if failed:  # palette masks a pipeline may have read as colours
            findings = [_palette_never_learned(f, failed) for f in findings]
    if probe and model is not None and getattr(model, "loss", None) is None:
        summary["probes_skipped"] = "the model's loss is not available (compile it, or register it)"
    elif probe:
        findings += _probe_findings(model, data, findings, summary, probe_size, batch_size)
        findings += _fits_files_not_training(findings, summary)
    return Report(findings, summary, report.plots)


def _fits_files_not_training(findings: list[Finding], summary: dict) -> list[Finding]:
    """``training-inputs-differ``: the history says nothing was learned, the overfit probe fit
    the files (as the doctor reads them), and no other finding names a cause. What training fed
    the model is then the suspect: the user's loader (fifth blind test, F7: image and mask
    cropped at different places, the files fine; the command line said only
    prediction-collapse)."""
    failed = sorted({f.id for f in findings if f.id in NEVER_LEARNED and f.severity == "error"})
    # probes_skipped lists the probes cut short (the overfit probe: "cannot-overfit")
    ran = "probes" in summary["checked"] and "cannot-overfit" not in summary.get(
        "probes_skipped", []
    )
    causes = [f for f in findings if f.id not in NEVER_LEARNED and f.severity != "info"]
    if not failed or not ran or causes:
        return []
    return [make_finding("training-inputs-differ", {"history": failed, "probe": "cannot-overfit"})]


def _palette_never_learned(f: Finding, failed: list[str]) -> Finding:
    """``mask-palette-file`` raised to a warning when the history says nothing was learned
    (fifth blind test, F4: VOC palette masks read with convert('L'), validation Dice 0)."""
    if f.id != "mask-palette-file":
        return f
    evidence = {**f.evidence, "history": sorted(set(failed))}
    return make_finding(f.id, evidence, variant="never-learned", severity="warning")


def _data_findings(data, summary: dict, report: Report | None) -> tuple[list[Finding], Any]:
    """The data checks; their summary goes into ``summary``, their plots into ``report``."""
    findings, data_summary, data_plots = check_data(data, plots=report is not None)
    summary.update(data_summary.to_dict())
    summary["checked"].append("data")
    for key, items in data_plots.items():
        for caption, png in items:
            report.add_plot(key, caption, png)
    return findings, data_summary


def _model_vs_data(model, data, data_summary, findings: list[Finding]) -> list[Finding]:
    """The model's input against the image files (model_data), and the background's weight."""
    findings = findings + check_model_vs_files(model, data)
    if data_summary.num_classes == 2:  # objects of binary masks (a scene's classes: one region)
        areas = [s.interior_area for s in data_summary.split_stats if s.interior_area]
        findings += receptive_field_findings(receptive_field(model), areas, "data folder")
    fg = sorted(data_summary.foreground_fractions)  # per image
    if fg:  # dice-includes-background: a warning when the median image is mostly empty
        findings = [background_severity(f, fg[len(fg) // 2]) for f in findings]
    return findings


def _history_findings(history, summary: dict, report: Report | None) -> list[Finding]:
    """The history checks, with the training curves plotted into ``report`` (None: no plots)."""
    h = load_history(history)
    found = analyze_history(h)
    summary["checked"].append("history")
    summary["epochs"] = max((len(v) for v in h.values()), default=0)
    if report is not None:
        _history_plots(report, h, found)
    return found


def _probe_findings(
    model, data, found: list[Finding], summary: dict, probe_size: int, batch_size: int | None
) -> list[Finding]:
    """The probes on one batch of ``data``; ``found``: the findings so far (``lr-too-high``)."""
    if model is None or data is None:
        raise SegdoctorError(
            "Probes need a model and data",
            expected="diagnose(data=FOLDER, model=MODEL, probe=True)",
            fix="pass both (CLI: segdoctor diagnose DATA --model MODEL --probe).",
        )
    x, y = load_probe_batch(data, model, size=probe_size)
    skipped: list[str] = []
    probed = run_probes(model, x, y, batch_size=batch_size, skipped=skipped)
    # One batch's range test can miss lr-too-high, and put its steepest descent high enough to
    # call a usual rate too low: the first updates of the weights decide both.
    others = [f for f in probed if f.id != "lr-too-low"]
    probed = others + probe_update_ratio(model, x[:4], y[:4], found=[*found, *probed])
    probed = _unblamed_pairing(probed, [*found, *probed])
    summary["checked"].append("probes")
    if skipped:  # cut short by the time budget: no verdict, and the report says so
        summary["probes_skipped"] = skipped
    return probed


READING_DIFFERS = frozenset(
    {"image-range-narrow", "image-mixed-bit-depth", "image-mixed-channels", "mask-void-label"}
)
"""Data findings under which a pipeline's reading of the files may differ from the doctor's (the
bit depth divided by, a void label taken as foreground): ``saved-model-not-best`` would compare
a score under one reading with a history under another (fifth blind test: a model trained on
12-bit data wrapped to uint8, and one trained with the void label as foreground, scored 0.18 and
0.35 and drew the error).
"""

NEVER_LEARNED = ("metric-constant", "prediction-collapse")
"""History errors that say the model learned nothing (``augment_range_if_failed``)."""

BLOCKING = (
    "input-constant",
    "softmax-single-channel",
    "softmax-wrong-axis",
    "output-activation-missing",
    "from-logits-mismatch",
    "activation-loss-mismatch",
    "augment-value-range",
    "loss-wrong-direction",
    "loss-not-differentiable",
    "mask-outlines",
)
"""Errors that make any target unlearnable: with one of them, a model that fits its own masks
no better than other images' masks says nothing about the pairing."""


def _unblamed_pairing(probed: list[Finding], every: list[Finding]) -> list[Finding]:
    """``cannot-overfit`` blames the pairing when the masks fit no better than masks of other
    images; when another error already stops any fitting (:data:`BLOCKING`), it says to fix that
    first (fourth blind test: a softmax over one channel, constant inputs and augmentation that
    erased the images each drew "check the pairing", and none of those runs had a pairing fault).
    """
    blockers = sorted({f.id for f in every if f.id in BLOCKING and f.severity == "error"})
    if not blockers:
        return probed
    out = []
    for f in probed:
        if f.id == "cannot-overfit" and f.evidence.get("fits_no_better_than_other_masks"):
            f = make_finding(
                "cannot-overfit",
                f.evidence | {"blocked_by": blockers},
                variant="blocked",
                blockers=", ".join(f"`{b}`" for b in blockers),
                optimizer_lr=f.evidence["learning_rate"],
                confidence=f.confidence,
            )
        out.append(f)
    return out


def _history_plots(report: Report, h: Mapping[str, Sequence[float]], found: list[Finding]) -> None:
    dice = [k for k in h if is_dice_like(k)]
    losses = [k for k in h if k in ("loss", "val_loss")]
    for f in found:
        keys = [k for k in h if k in LR_KEYS] if f.id == "lr-reduced-while-improving" else []
        png = curves_png(h, (dice or losses) if not keys else dice, f.title)
        report.add_plot(f.id, "training curves", png)
        if keys:
            report.add_plot(f.id, "learning rate", curves_png(h, keys, "learning rate"))
    if not found:
        report.add_plot("history", "training curves", curves_png(h, dice + losses, "history"))
