"""Run-folder files and safe model loading: the layer below both ``train`` and ``doctor``.

``train`` writes a run folder and loads its checkpoints; the doctor and the commands load a model
file or a run folder's best model. Both go through :func:`load_model`, which loads with Keras
``safe_mode=True``: a model that needs arbitrary code to deserialize (a ``Lambda`` layer) is refused
with an explanation, unless the user opts in with ``unsafe=True``.

A run folder's ``run.json`` (the decisions a run made: learning rate, mode, classes, channels,
normalizer, mask policy, split, schedule, budget) has one schema, :class:`RunMeta`, and one reader
and writer: :func:`read_run_meta`, :func:`write_run_meta` and :func:`update_run_meta`. The file
carries a ``version``; files written before it existed are read as version 1.

Example:
    >>> from segdoctor.runfiles import MODEL_FILES
    >>> MODEL_FILES
    ('best.keras', 'last.keras')
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from segdoctor._io import atomic_write_text
from segdoctor.errors import ModelLoadError, SegdoctorError
from segdoctor.jsonsafe import to_jsonable

MODEL_FILES = ("best.keras", "last.keras")
"""The models a run folder stands for, in the order they are looked for."""


def resolve_model_path(model: str | Path) -> Path:
    """A ``.keras`` file, or a run folder (its ``best.keras``, else ``last.keras``).

    Raises:
        ModelLoadError: no model there, or not a Keras 3 ``.keras`` file.

    Example:
        >>> resolve_model_path("runs/demo")  # doctest: +SKIP
        PosixPath('runs/demo/best.keras')
    """
    path = Path(model)
    if path.is_dir():
        for name in MODEL_FILES:
            if (path / name).is_file():
                return path / name
        raise ModelLoadError(
            f"The run folder {path} holds no model",
            expected="best.keras or last.keras inside it",
            fix="pass the .keras file itself, or a folder written by `segdoctor train`.",
        )
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist", fix="check the path.")
    if path.suffix != ".keras":
        raise ModelLoadError(
            f"{path.name} is not a Keras 3 model file",
            expected="a .keras file (model.save('model.keras'))",
            received=path.suffix or "no extension",
            fix="save the model with model.save('name.keras'); legacy .h5 files are not supported.",
        )
    return path


def load_model(model: str | Path, unsafe: bool = False, compile: bool = False) -> keras.Model:
    """Load a model with safe deserialization; explain a refusal instead of raising a traceback.

    Args:
        model: a ``.keras`` file or a run folder (:func:`resolve_model_path`).
        unsafe: allow code in the file (``Lambda`` layers) to run: Keras ``safe_mode=False``.
        compile: restore the loss, metrics and optimizer too.

    Raises:
        ModelLoadError: the file is missing, refused by safe mode, or unreadable; the message says
            which and what to do.

    Example:
        >>> model = load_model("runs/demo")  # doctest: +SKIP
    """
    # register segdoctor's objects; the models' layers too (segdoctor.models.layers): without
    # them `segdoctor diagnose DATA --model RUN` could not load segdoctor's own U-Net
    for module in ("segdoctor.losses", "segdoctor.metrics", "segdoctor.models"):
        importlib.import_module(module)
    path = resolve_model_path(model)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=not unsafe)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text or "unsafe" in text.lower():
            raise ModelLoadError(
                f"{path.name} contains code (a Lambda layer or a custom function) that Keras only runs with safe_mode off",
                expected="a model made of registered layers",
                fix="if you trust the file, pass --unsafe (unsafe=True); better, replace the Lambda layer with a registered custom layer.",
            ) from None
        raise ModelLoadError(
            f"Cannot load {path}",
            received=text.splitlines()[0][:300],
            fix="check that the file is a complete model saved by Keras 3.",
        ) from None
    except (OSError, EOFError, KeyError) as exc:
        raise ModelLoadError(
            f"Cannot read {path} ({type(exc).__name__})",
            expected="a complete .keras zip file",
            fix="the file may be truncated: use another checkpoint (last.keras or best.keras).",
        ) from None
    except Exception as exc:  # zipfile.BadZipFile and backend-specific errors
        raise ModelLoadError(
            f"Cannot load {path}",
            received=f"{type(exc).__name__}: {str(exc)[:300]}",
            fix="check that the file is a complete model saved by Keras 3.",
        ) from None


# ----------------------------------------------------------------------------------------------
# run.json


RUN_JSON = "run.json"
"""The file name of a run folder's metadata."""

RUN_META_VERSION = 1
"""The ``run.json`` schema version this segdoctor writes, and the newest it reads."""

_REQUIRED = ("lr", "mode", "num_classes", "channels", "normalizer")
_OMITTED_WHEN_NONE = ("schedule_steps", "configuration", "precision", "budget")


class RunMetaError(SegdoctorError):
    """A run folder's ``run.json`` is missing, corrupted, or of a version this segdoctor cannot read."""


@dataclass(kw_only=True)
class RunMeta:
    """The schema of ``run.json``: what a run decided, for resuming, evaluating and predicting.

    Attributes:
        lr: the learning rate the run trained with.
        mode: "binary" or "multiclass".
        num_classes: classes of the masks (2 for binary).
        channels: input channels the model takes.
        normalizer: ``ImageNormalizer.to_dict()``.
        ignore_index: the void label, or None.
        mask_policy: ``MaskPolicy`` as JSON.
        schedule_epochs, schedule_steps: the learning-rate schedule's horizon.
        train_names, val_names: the split.
        backend, keras: where the run trained.
        configuration: the width choice of a budgeted run (None: not searched).
        precision: bfloat16 or float32, why, and the measurement behind an ``auto`` choice.
        budget: ``Deadline.to_dict()`` once the run ends (None before).
        extra: keys this version does not know (kept as read, written back).
        version: the schema version (:data:`RUN_META_VERSION`).

    Example:
        >>> meta = RunMeta(lr=1e-3, mode="binary", num_classes=2, channels=1,
        ...                normalizer={"mode": "image"})
        >>> RunMeta.from_dict(meta.to_dict()) == meta
        True
    """

    # in the order of the keys in the file
    backend: str | None = None
    keras: str | None = None
    lr: float
    schedule_epochs: int | None = None
    mode: str
    num_classes: int
    channels: int
    ignore_index: int | None = None
    mask_policy: dict[str, Any] | None = None
    normalizer: dict[str, Any]
    train_names: list[str] = field(default_factory=list)
    val_names: list[str] = field(default_factory=list)
    schedule_steps: int | None = None
    configuration: dict[str, Any] | None = None
    precision: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = RUN_META_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``run.json`` (``version`` first, then the fields)."""
        out: dict[str, Any] = {"version": self.version}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("version", "extra") or (value is None and f.name in _OMITTED_WHEN_NONE):
                continue
            out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = RUN_JSON) -> RunMeta:
        """Read a ``run.json`` object; raises :class:`RunMetaError` saying what is wrong.

        A file without ``version`` (written before the field existed) is version 1.
        """
        if not isinstance(data, dict):
            raise _corrupt(source, f"a JSON {type(data).__name__}, not an object")
        version = _check_version(data.get("version", 1), source)
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise _corrupt(source, "no " + ", ".join(missing))
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "version"}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values.update(
                lr=float(data["lr"]),
                num_classes=int(data["num_classes"]),
                channels=int(data["channels"]),
            )
        except (TypeError, ValueError):
            raise _corrupt(
                source,
                f"lr {data['lr']!r}, num_classes {data['num_classes']!r}, "
                f"channels {data['channels']!r}",
            ) from None
        extra = {k: v for k, v in data.items() if k not in known and k != "version"}
        return cls(**values, extra=extra, version=version)


def _check_version(version: Any, source: str | Path) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RunMetaError(
            f"{source} has an unknown schema version",
            expected=f"a whole number from 1 to {RUN_META_VERSION}",
            received=repr(version),
            fix="the file was edited by hand or is not a segdoctor run.json: restore it, or "
            "start a new run with `segdoctor train DATA --out RUN`.",
        )
    if version > RUN_META_VERSION:
        raise RunMetaError(
            f"{source} was written by a newer segdoctor (run.json version {version})",
            expected=f"version {RUN_META_VERSION} or older, which this segdoctor reads",
            received=f"version {version}",
            fix="upgrade segdoctor (pip install -U segdoctor) to read this run folder.",
        )
    return version


def _corrupt(source: str | Path, received: str) -> RunMetaError:
    return RunMetaError(
        f"{source} is corrupted or incomplete",
        expected="the JSON object `segdoctor train` writes, with " + ", ".join(_REQUIRED),
        received=received,
        fix="the file was cut short or edited: restore it from a copy, or start a new run with "
        "`segdoctor train DATA --out RUN` (the models in the folder cannot be used without it).",
    )


def run_meta_path(run_dir: str | Path) -> Path:
    """``run_dir/run.json``.

    Example:
        >>> run_meta_path("runs/demo").as_posix()
        'runs/demo/run.json'
    """
    return Path(run_dir) / RUN_JSON


def read_run_meta(run_dir: str | Path) -> RunMeta:
    """Read ``run_dir/run.json``.

    Raises:
        RunMetaError: the file is missing, not valid JSON, lacks a required key, or has a version
            this segdoctor does not read; the message says which and what to do.

    Example:
        >>> read_run_meta("runs/demo").lr  # doctest: +SKIP
        0.0031
    """
    path = run_meta_path(run_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunMetaError(
            f"{path} does not exist",
            expected="a run folder written by `segdoctor train`",
            fix="pass the run folder itself, or start a new run with `segdoctor train DATA --out RUN`.",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _corrupt(path, f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    return RunMeta.from_dict(data, source=path)


def write_run_meta(run_dir: str | Path, meta: RunMeta) -> Path:
    """Write ``meta`` to ``run_dir/run.json`` atomically (strict JSON: NaN and inf as null).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> meta = RunMeta(lr=0.01, mode="binary", num_classes=2, channels=3, normalizer={})
        >>> _ = write_run_meta(folder, meta)
        >>> read_run_meta(folder).channels
        3
    """
    text = json.dumps(to_jsonable(meta.to_dict()), indent=2, allow_nan=False)
    return atomic_write_text(run_meta_path(run_dir), text)


def update_run_meta(run_dir: str | Path, **changes: Any) -> RunMeta:
    """Read ``run.json``, change the named fields, write it back atomically; returns the new meta.

    A name that is not a field of :class:`RunMeta` is kept in ``extra``.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> meta = RunMeta(lr=0.01, mode="binary", num_classes=2, channels=1, normalizer={})
        >>> _ = write_run_meta(folder, meta)
        >>> update_run_meta(folder, schedule_steps=120).schedule_steps
        120
    """
    meta = read_run_meta(run_dir)
    known = {f.name for f in dataclasses.fields(RunMeta)} - {"extra", "version"}
    extra = {**meta.extra, **{k: v for k, v in changes.items() if k not in known}}
    meta = dataclasses.replace(
        meta, **{k: v for k, v in changes.items() if k in known}, extra=extra
    )
    write_run_meta(run_dir, meta)
    return meta
