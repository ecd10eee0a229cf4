"""Training configuration: frozen dataclasses of plain types, YAML defaults, CLI overrides.

Resolution order: dataclass defaults, then a YAML file, then ``key=value`` overrides such as
``train.epochs=30``; the result is validated and written into the run folder as ``config.yaml``.
No eval/exec: YAML is read with ``yaml.safe_load`` and override values are parsed as YAML scalars.

Example:
    >>> cfg = resolve_config(overrides={"train.epochs": "3", "data.path": "data"})
    >>> cfg.train.epochs
    3
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from segdoctor.data.io import ON_ERROR
from segdoctor.data.masks import KINDS as MASK_KINDS
from segdoctor.errors import ConfigError, check_choice, did_you_mean
from segdoctor.losses import list_losses
from segdoctor.models.unet import NORMS


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it becomes batches."""

    path: str = ""
    val_path: str | None = None  # a separate validation folder; else a split of `path`
    val_fraction: float = 0.2
    split_seed: int = 0
    group_by: str | None = None  # regex whose first match in a file name is the group key
    # read every image before splitting: pixel-identical images and tiles that share a region
    # (cut with overlap) go to one side (split_pairs(keep_duplicates_together=True))
    keep_duplicates_together: bool = False
    mask_policy: str = "auto"  # auto, or a kind of segdoctor.data.masks.KINDS (e.g. scale-255)
    num_classes: int | None = None  # inferred from the masks when None
    ignore_index: int | None = None
    channels: int | None = None  # 1 or 3; inferred from the images when None
    patch_size: int = 256
    batch_size: int = 8
    foreground_oversample: float = 0.33
    augment: str = "default"  # default | light | strong | none
    samples_per_epoch: int | None = None  # patches drawn per epoch; default: one per image
    cache: bool = True
    on_error: str = "raise"  # raise | skip: a bad file stops the run, or is skipped and listed

    @property
    def skip_bad_files(self) -> bool:
        """``on_error == "skip"`` (the configuration key of that name is deprecated)."""
        return self.on_error == "skip"


@dataclass(frozen=True)
class ModelConfig:
    """The network."""

    name: str = "unet"
    depth: int = 4
    base_filters: int = 32
    norm: str = "batch"
    dropout: float = 0.0
    residual: bool = False
    # Auxiliary heads on the decoder levels 1..depth-2, trained with the same loss (weights halving
    # per level, as nnU-Net); best.keras/last.keras keep the main output only. Needs depth >= 3.
    deep_supervision: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe."""

    epochs: int = 50
    loss: str = "dice_ce"  # a name of segdoctor.losses.list_losses()
    lr: float | None = None  # None: run an LR range test and take its suggestion
    lr_find_steps: int = 50  # batches of the LR range test
    optimizer: str = "adamw"  # adamw | adam | sgd
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | poly | plateau | constant
    warmup_epochs: int = 1
    early_stopping_patience: int | None = 15
    mixed_precision: str = "auto"  # auto | on | off (bfloat16 compute, float32 weights)
    seed: int = 0
    max_minutes: float | None = None
    tensorboard: bool = False
    doctor: bool = True
    devices: int = 1  # > 1: data-parallel over local devices (JAX backend, keras.distribution)
    verbose: int = 1


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written to RUN/config.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # "section.name" keys the user set (YAML file or overrides); not written to config.yaml.
    # The recipe may size what is not in here to the machine and the budget (model.base_filters).
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def is_explicit(self, key: str) -> bool:
        """True when the user set ``key`` ("model.base_filters") rather than leaving the default."""
        return key in self.explicit


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
CHOICES = {
    # Vocabularies owned by the layer that consumes them (one owner each, imported here):
    ("data", "mask_policy"): ("auto", *MASK_KINDS),
    ("data", "augment"): ("default", "light", "strong", "none"),
    ("data", "on_error"): ON_ERROR,
    ("model", "norm"): NORMS,
    ("train", "loss"): tuple(list_losses()),
    ("train", "optimizer"): ("adamw", "adam", "sgd"),
    ("train", "schedule"): ("cosine", "poly", "plateau", "constant"),
    ("train", "mixed_precision"): ("auto", "on", "off"),
}
_SWITCH_WORDS = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}
"""Fields with an "auto" setting that also take the usual true/false words."""


def _coerce(section: str, name: str, value: Any, annotation: str) -> Any:
    """Convert a YAML/CLI value to the field's declared type, or raise ConfigError."""
    key = f"{section}.{name}"
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"{key} cannot be empty", expected=annotation, fix=f"give {key} a value.")
    base = annotation.replace(" | None", "")
    if (section, name) == ("train", "mixed_precision"):
        value = _SWITCH_WORDS.get(str(value).strip().lower(), str(value).strip().lower())
    try:
        if base == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
        if base == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError(value)
            return int(float(value))
        if base == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"Invalid value for {key}",
            expected=base,
            received=repr(value),
            fix=f"set {key} to a {base}.",
        ) from None


RENAMED = {("data", "skip_bad_files"): "data.on_error"}
"""Old keys still read, with a deprecation warning: old key -> new key."""


def _renamed(section: str, name: str, value: Any) -> tuple[str, Any]:
    """``data.skip_bad_files=true`` -> ``("on_error", "skip")``, with a FutureWarning."""
    new = "skip" if _coerce(section, name, value, "bool") else "raise"
    warnings.warn(
        f"segdoctor: the configuration key {section}.{name} is deprecated; "
        f"use {RENAMED[(section, name)]}={new} instead.",
        FutureWarning,
        stacklevel=4,
    )
    return "on_error", new


def _apply(config: RunConfig, section: str, name: str, value: Any) -> RunConfig:
    if (section, name) in RENAMED:
        name, value = _renamed(section, name, value)
    if section not in SECTIONS:
        raise ConfigError(
            f"Unknown configuration section {section!r}",
            expected="data, model or train",
            fix=f"write keys as section.name, e.g. train.epochs.{did_you_mean(section, SECTIONS)}",
        )
    cls = SECTIONS[section]
    known = {f.name: f for f in fields(cls)}
    if name not in known:
        raise ConfigError(
            f"Unknown configuration key {section}.{name}",
            expected=f"one of {', '.join(sorted(known))}",
            fix=f"check the spelling.{did_you_mean(name, known)}",
        )
    coerced = _coerce(section, name, value, str(known[name].type))
    sub = replace(getattr(config, section), **{name: coerced})
    return replace(config, **{section: sub})


def validate(config: RunConfig) -> RunConfig:
    """Check ranges and choices; return the config unchanged or raise ConfigError.

    Example:
        >>> validate(RunConfig()).model.depth
        4
    """
    for (section, name), options in CHOICES.items():
        check_choice(f"{section}.{name}", getattr(getattr(config, section), name), options)
    for ok, key, expected, received in _range_checks(config):
        if not ok:
            raise ConfigError(
                f"Invalid value for {key}",
                expected=expected,
                received=repr(received),
                fix=f"change {key}.",
            )
    _check_consistency(config)
    return config


def _range_checks(config: RunConfig) -> list[tuple[bool, str, str, Any]]:
    """``(ok, key, expected, value)`` of every single-value range check, in reporting order.

    Example:
        >>> [key for ok, key, _, _ in _range_checks(RunConfig()) if not ok]
        []
    """
    d, t, m = config.data, config.train, config.model
    return [
        (0.0 <= d.val_fraction < 1.0, "data.val_fraction", "0 <= value < 1", d.val_fraction),
        (d.batch_size >= 1, "data.batch_size", ">= 1", d.batch_size),
        (d.patch_size >= 16, "data.patch_size", ">= 16", d.patch_size),
        (
            0.0 <= d.foreground_oversample <= 1.0,
            "data.foreground_oversample",
            "between 0 and 1",
            d.foreground_oversample,
        ),
        (d.channels in (None, 1, 3), "data.channels", "1, 3 or empty (inferred)", d.channels),
        (t.epochs >= 1, "train.epochs", ">= 1", t.epochs),
        (
            t.lr is None or 0 < t.lr < 10,
            "train.lr",
            "0 < lr < 10, or empty for an LR range test",
            t.lr,
        ),
        (t.weight_decay >= 0, "train.weight_decay", ">= 0", t.weight_decay),
        (t.lr_find_steps >= 10, "train.lr_find_steps", ">= 10", t.lr_find_steps),
        (t.warmup_epochs >= 0, "train.warmup_epochs", ">= 0", t.warmup_epochs),
        (t.max_minutes is None or t.max_minutes > 0, "train.max_minutes", "> 0", t.max_minutes),
        (t.devices >= 1, "train.devices", ">= 1", t.devices),
        (1 <= m.depth <= 7, "model.depth", "1..7", m.depth),
        (m.base_filters >= 1, "model.base_filters", ">= 1", m.base_filters),
        (0 <= m.dropout < 1, "model.dropout", "0 <= dropout < 1", m.dropout),
    ]


def _check_consistency(config: RunConfig) -> None:
    """Raise ConfigError when values that are each in range do not fit together.

    The batch must split evenly over the devices, deep supervision needs depth >= 3, and the
    patch must be a multiple of the model stride ``2 ** depth``.

    Example:
        >>> try:
        ...     _check_consistency(RunConfig(data=DataConfig(patch_size=100)))
        ... except ConfigError as err:
        ...     print(err.fix)
        use data.patch_size=96.
    """
    d, t, m = config.data, config.train, config.model
    if d.batch_size % t.devices:
        raise ConfigError(
            f"data.batch_size {d.batch_size} cannot be split evenly over {t.devices} devices",
            expected=f"a multiple of train.devices ({t.devices})",
            fix=f"use data.batch_size={max(t.devices, d.batch_size // t.devices * t.devices)}.",
        )
    if m.deep_supervision and m.depth < 3:
        raise ConfigError(
            f"model.deep_supervision needs model.depth >= 3 (got depth {m.depth})",
            expected="depth >= 3: the auxiliary heads sit on the decoder levels 1..depth-2",
            received=f"model.depth={m.depth}",
            fix="increase model.depth, or set model.deep_supervision=false.",
        )
    stride = 2**m.depth
    if d.patch_size % stride:
        raise ConfigError(
            f"data.patch_size {d.patch_size} is not a multiple of the model stride {stride}",
            expected=f"a multiple of 2**model.depth = {stride}",
            received=str(d.patch_size),
            fix=f"use data.patch_size={max(stride, d.patch_size // stride * stride)}.",
        )


def resolve_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides`` ({"train.epochs": "3"})."""
    config = RunConfig()
    explicit: set[str] = set()
    if path is not None:
        mapping = load_yaml(path)
        config = merge_mapping(config, mapping)
        explicit |= {f"{s}.{k}" for s, v in mapping.items() if isinstance(v, dict) for k in v}
    explicit |= set(overrides or {})
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(
                f"Override {key!r} has no section",
                expected="section.name=value, e.g. train.epochs=30",
                fix="prefix the key with data., model. or train.",
            )
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else None
        config = _apply(config, section, name, value)
    return validate(replace(config, explicit=frozenset(explicit)))


def merge_mapping(config: RunConfig, mapping: dict[str, Any]) -> RunConfig:
    """Apply a nested {section: {key: value}} mapping to ``config``."""
    if not isinstance(mapping, dict):
        raise ConfigError(
            "A configuration file must hold a mapping",
            expected="sections data:, model:, train:",
            received=type(mapping).__name__,
            fix="see `segdoctor train --help` for an example.",
        )
    for section, values in mapping.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"Section {section!r} must be a mapping",
                received=repr(values),
                fix=f"write `{section}:` followed by indented key: value lines.",
            )
        for name, value in values.items():
            config = _apply(config, str(section), str(name), value)
    return config


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file safely."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the configuration file {path}",
            received=exc.strerror,
            fix="check the path.",
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path} is not valid YAML", received=str(exc).splitlines()[0], fix="fix the syntax."
        ) from None
    return data or {}


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain nested dict (YAML/JSON safe); which keys were explicit is not part of it."""
    out = dataclasses.asdict(config)
    out.pop("explicit", None)
    return out


def config_from_dict(mapping: dict[str, Any]) -> RunConfig:
    """Inverse of :func:`config_to_dict`, validated."""
    return validate(merge_mapping(RunConfig(), mapping))


def dump_yaml(config: RunConfig) -> str:
    """The resolved configuration as YAML text."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
