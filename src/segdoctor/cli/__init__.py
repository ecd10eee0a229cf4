"""The ``segdoctor`` command: a thin layer over importable functions.

Every command maps to one function (``cmd_train``, ``cmd_diagnose``, ...) that takes parsed
arguments and returns an exit status, so scripts and tests can call them without a subprocess.
Exit status: 0 success; 1 the diagnosis found an error; 2 the command could not run (bad arguments
or unreadable input), always with a message saying what to do; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from segdoctor import __version__
from segdoctor._backend import describe_backend
from segdoctor.errors import SegdoctorError

STARTED = time.monotonic()
"""When the command started (this module is the entry point's first import): ``--max-minutes``
and the demo's ``--minutes`` count from here, the seconds of importing Keras included."""

# Each command imports its modules inside its function: they all import Keras, which must come
# after main() has set up the backend's environment (XLA_FLAGS for --devices, TensorFlow's log
# level) and after STARTED, and `segdoctor --help` should not pay for importing Keras.


def _err(message: str) -> None:
    print(f"segdoctor: error: {message}", file=sys.stderr)


def _overrides(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep:
            raise SegdoctorError(
                f"Cannot read the override {item!r}",
                expected="section.key=value, e.g. train.epochs=30",
                fix="write the key, an equals sign and the value without spaces.",
            )
        out[key.strip()] = value
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """``segdoctor train DATA --out RUN``: the default recipe on a data folder."""
    from segdoctor.cli.train import resume_training, run_training  # noqa: PLC0415 - the backend is chosen first
    from segdoctor.train.budget import Deadline  # noqa: PLC0415 - the backend is chosen first
    from segdoctor.train.config import resolve_config  # noqa: PLC0415 - the backend is chosen first

    started = Deadline(None, started=STARTED)  # the budget, once known, counts from the start

    if args.resume:
        result = resume_training(Path(args.resume), extra_epochs=args.epochs, deadline=started)
    else:
        if args.data is None:
            raise SegdoctorError(
                "No data folder given",
                expected="segdoctor train DATA --out RUN",
                fix="name the folder that holds images/ and masks/, or use --resume RUN.",
            )
        overrides = _overrides(args.set or [])
        overrides["data.path"] = str(args.data)
        for key, value in (
            ("train.epochs", args.epochs),
            ("train.lr", args.lr),
            ("data.batch_size", args.batch_size),
            ("data.patch_size", args.patch_size),
            ("train.max_minutes", args.max_minutes),
            ("model.name", args.model),
        ):
            if value is not None:
                overrides[key] = str(value)
        if args.mixed_precision:
            overrides["train.mixed_precision"] = "on"
        if args.devices:
            overrides["train.devices"] = str(args.devices)
        config = resolve_config(args.config, overrides)
        result = run_training(config, Path(args.out), deadline=started)
    print(result.summary_text())
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def cmd_diagnose(args: argparse.Namespace) -> int:
    """``segdoctor diagnose DATA``: data checks, plus model/probe/history checks on request."""
    from segdoctor.cli.diagnose import cli_diagnose  # noqa: PLC0415 - the backend is chosen first

    if args.verify or args.write_fixed:
        from segdoctor.cli.verify import cmd_verify  # noqa: PLC0415 - the backend is chosen first

        return cmd_verify(args)
    return cli_diagnose(
        args.data,
        history=args.history,
        model=args.model,
        probe=args.probe,
        json_path=args.json,
        html_path=args.html,
        safe_mode=not args.unsafe,
        batch_size=args.batch_size,
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``segdoctor evaluate MODEL DATA``: per-image Dice and IoU at full size."""
    from segdoctor.cli.evaluate import evaluate_command  # noqa: PLC0415 - the backend is chosen first

    return evaluate_command(
        args.model,
        args.data,
        json_path=args.json,
        csv_path=args.csv,
        hausdorff=args.hausdorff,
        unsafe=args.unsafe,
        tta=args.tta,
    )


def cmd_predict(args: argparse.Namespace) -> int:
    """``segdoctor predict MODEL IMAGES --out DIR``: masks at each input's own size."""
    from segdoctor.cli.evaluate import predict_command  # noqa: PLC0415 - the backend is chosen first

    return predict_command(args.model, args.images, args.out, unsafe=args.unsafe, tta=args.tta)


def cmd_lr_find(args: argparse.Namespace) -> int:
    """``segdoctor lr-find DATA``: the loss-versus-LR curve and a suggested learning rate."""
    from segdoctor.cli.train import lr_find_command  # noqa: PLC0415 - the backend is chosen first
    from segdoctor.train.config import resolve_config  # noqa: PLC0415 - the backend is chosen first

    overrides = _overrides(args.set or [])
    overrides["data.path"] = str(args.data)
    config = resolve_config(args.config, overrides)
    return lr_find_command(config, Path(args.out))


def cmd_demo(args: argparse.Namespace) -> int:
    """``segdoctor demo``: diagnose and train on the bundled nuclei sample."""
    from segdoctor.cli.demo import run_demo  # noqa: PLC0415 - the backend is chosen first
    from segdoctor.train.budget import Deadline  # noqa: PLC0415 - the backend is chosen first

    deadline = Deadline(args.minutes * 60.0, started=STARTED)  # the whole demo, imports included

    return run_demo(Path(args.out), minutes=args.minutes, epochs=args.epochs, deadline=deadline)


def _add_tta_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average the four mirrored predictions (4x the computation)",
    )


def _add_demo(sub) -> None:
    """``segdoctor demo`` and its options."""
    p = sub.add_parser(
        "demo", help="diagnose and train on the bundled nuclei sample (a few minutes)"
    )
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument(
        "--minutes",
        type=float,
        default=4.0,
        help="time budget of the whole demo in minutes (default: 4)",
    )
    p.add_argument("--epochs", type=int, default=40, help="maximum epochs (default: 40)")
    p.set_defaults(func=cmd_demo)


def _add_train(sub) -> None:
    """``segdoctor train`` and its options."""
    p = sub.add_parser("train", help="train the default recipe on DATA (images/ + masks/)")
    p.add_argument("data", nargs="?", help="data folder")
    p.add_argument("--out", default="runs/latest", help="run folder (default: runs/latest)")
    p.add_argument("--config", help="YAML configuration file (sections data:, model:, train:)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=30 (repeatable)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float, help="learning rate (default: from an LR range test)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--patch-size", type=int)
    p.add_argument("--model", help="model name (see segdoctor.models.list_models())")
    p.add_argument(
        "--max-minutes",
        type=float,
        help="stop at the first epoch boundary after N minutes, keeping the best model",
    )
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="train in mixed bfloat16 (default: auto, on where it is measured to be faster)",
    )
    p.add_argument(
        "--resume", metavar="RUN", help="continue an interrupted run from its last completed epoch"
    )
    p.add_argument(
        "--devices", type=int, help="data-parallel training over N local devices (JAX backend)"
    )
    p.set_defaults(func=cmd_train)


def _add_diagnose(sub) -> None:
    """``segdoctor diagnose`` and its options (``--verify`` included)."""
    p = sub.add_parser("diagnose", help="explain why validation Dice is not improving")
    p.add_argument("data", help="data folder")
    p.add_argument(
        "--history", help="training log: Keras CSVLogger CSV or a JSON dump of History.history"
    )
    p.add_argument("--model", help="a .keras model file (or a run folder) to check")
    p.add_argument(
        "--probe", action="store_true", help="run short probes (seconds of real training)"
    )
    p.add_argument("--json", help="write the findings as JSON to this file")
    p.add_argument("--html", help="write an HTML report to this file")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="the training batch size (checks BatchNorm with small batches and, with --probe, "
        "whether gradients at this batch size are mostly noise)",
    )
    p.add_argument(
        "--unsafe",
        action="store_true",
        help="allow loading models with Lambda layers (runs their code)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="prove each fix segdoctor can apply: train as diagnosed, with the fix and as "
        "diagnosed with another seed (the seed noise), and compare the validation Dice per image",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        help="time for all --verify runs together (default 10)",
    )
    p.add_argument(
        "--write-fixed",
        metavar="OUT",
        help="write a corrected copy of the data to OUT (your files are never changed)",
    )
    p.set_defaults(func=cmd_diagnose)


def _add_evaluate(sub) -> None:
    """``segdoctor evaluate`` and its options."""
    p = sub.add_parser("evaluate", help="per-image Dice/IoU of a model on DATA")
    p.add_argument("model", help="a .keras file or a run folder (its best model)")
    p.add_argument("data", help="data folder")
    p.add_argument("--json", help="write summary and per-image scores as JSON")
    p.add_argument("--csv", help="write per-image scores as CSV")
    p.add_argument(
        "--hausdorff",
        action="store_true",
        help="also compute the 95th-percentile Hausdorff distance",
    )
    _add_tta_option(p)
    p.add_argument("--unsafe", action="store_true", help="allow loading models with Lambda layers")
    p.set_defaults(func=cmd_evaluate)


def _add_predict(sub) -> None:
    """``segdoctor predict`` and its options."""
    p = sub.add_parser("predict", help="write predicted masks for a folder of images")
    p.add_argument("model", help="a .keras file or a run folder")
    p.add_argument("images", help="an image file or a folder of images")
    p.add_argument("--out", required=True, help="output folder for the masks")
    _add_tta_option(p)
    p.add_argument("--unsafe", action="store_true", help="allow loading models with Lambda layers")
    p.set_defaults(func=cmd_predict)


def _add_lr_find(sub) -> None:
    """``segdoctor lr-find`` and its options."""
    p = sub.add_parser(
        "lr-find", help="LR range test: loss-vs-LR plot and a suggested learning rate"
    )
    p.add_argument("data", help="data folder")
    p.add_argument("--out", default="runs/lr-find", help="output folder")
    p.add_argument("--config", help="YAML configuration file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    p.set_defaults(func=cmd_lr_find)


def build_parser() -> argparse.ArgumentParser:
    """The ``segdoctor`` argument parser: one sub-command per command function."""
    parser = argparse.ArgumentParser(
        prog="segdoctor",
        description="Train segmentation models with Dice the right way, and find out why validation Dice is not improving.",
    )
    parser.add_argument("--version", action="version", version=f"segdoctor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_demo(sub)
    _add_train(sub)
    _add_diagnose(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_lr_find(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segdoctor`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    devices = getattr(args, "devices", None)
    if (
        devices
        and devices > 1
        and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "")
    ):
        # Must happen before JAX starts; it only affects the CPU platform (harmless on GPU hosts).
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
        ).strip()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    print(describe_backend(), file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except SegdoctorError as exc:
        _err(str(exc))
        return 2
    except OSError as exc:  # a file system problem no specific check anticipated
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _err(
            f"{exc.strerror or exc}{where}. Check that the path exists, is readable or writable as needed, and that the disk is not full."
        )
        return 2
    except KeyboardInterrupt:
        _err(
            "interrupted. A training run keeps its last completed epoch: continue it with `segdoctor train --resume RUN`."
        )
        return 130
