"""The layering of src/segdoctor is true: no module imports a higher layer, nor a side neighbour.

Layers, bottom to top (a module may import its own group and any lower layer):

0. the foundations: the package root, ``errors``, ``_backend``, ``_io``, ``_torch_sums``, ``data``,
   ``losses``, ``metrics``, ``models``, ``sample_data``;
1. ``runfiles``: run-folder files and safe model loading, shared by train and the doctor;
2. ``train`` and ``doctor``, side by side: neither imports the other;
3. ``cli``: the commands, which put train and the doctor together.

Every import counts: at module top, inside functions (the lazy ones too), under ``TYPE_CHECKING``,
relative ones, and ``importlib.import_module("segdoctor...")`` with a literal name. A new top-level
module must be given a layer here before its imports can be judged.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import segdoctor

LAYERS: dict[str, tuple[int, str]] = {
    **{
        name: (0, "base")
        for name in (
            "",  # the package root (segdoctor/__init__.py: the version, the backend choice)
            "errors",
            "_backend",
            "_io",
            "_torch_sums",
            "jsonsafe",  # the one JSON sanitizer (NaN/inf -> null), for every JSON segdoctor writes
            "plotting",  # the one plotting stack (Figure on its own Agg canvas), for both reports
            "lr_range",  # the LR range test and the LR reader, for train and doctor
            "data",
            "losses",
            "metrics",
            "models",
            "registry",  # the Registry shape (names -> factories) of the losses and the models
            "sample_data",
        )
    },
    "runfiles": (1, "runfiles"),
    "train": (2, "train"),
    "doctor": (2, "doctor"),
    "cli": (3, "cli"),
}
"""Top-level name under ``segdoctor`` -> (layer, group). Same group: always allowed."""


def module_name(path: Path, root: Path) -> str:
    """``root/data/masks.py`` -> ``segdoctor.data.masks`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["segdoctor", *parts])


def collect_sources(root: Path) -> dict[str, str]:
    """Module name -> source text, for every ``.py`` file under the package folder ``root``."""
    return {module_name(p, root): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))}


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def imported_names(module: str, source: str, is_package: bool = False) -> Iterator[tuple[str, int]]:
    """Every ``segdoctor`` module that ``source`` imports, anywhere in it, with the line number.

    ``from segdoctor import data`` names ``segdoctor.data``; ``from segdoctor.data import x``
    names ``segdoctor.data`` (its group is what matters).
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            if base == "segdoctor":
                for alias in node.names:
                    yield f"segdoctor.{alias.name}", node.lineno
            else:
                yield base, node.lineno
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def layer_of(name: str) -> tuple[int, str] | None:
    """The (layer, group) of a ``segdoctor`` module name; None for a name outside segdoctor."""
    parts = name.split(".")
    if parts[0] != "segdoctor":
        return None
    top = parts[1] if len(parts) > 1 else ""
    if top not in LAYERS and top.startswith("__"):  # segdoctor.__version__ and the like
        top = ""
    if top not in LAYERS:
        raise KeyError(
            f"segdoctor.{top} has no layer: add it to LAYERS in tests/test_layering.py "
            "(bottom, runfiles, train, doctor or cli) and say why in docs/architecture.md"
        )
    return LAYERS[top]


def upward_edges(sources: Mapping[str, str], packages: set[str] = frozenset()) -> list[str]:
    """The imports that break the layering, as ``"importer -> imported (line N)"`` strings.

    Args:
        sources: module name -> source text.
        packages: the names in ``sources`` that are packages (their relative imports start there).
    """
    bad = []
    for module, source in sources.items():
        here = layer_of(module)
        assert here is not None, module
        for name, line in imported_names(module, source, module in packages):
            there = layer_of(name)
            if there is None or there[1] == here[1] or there[0] < here[0]:
                continue
            bad.append(f"{module} -> {name} (line {line})")
    return bad


ROOT = Path(segdoctor.__file__).parent


def test_the_package_has_no_upward_or_sideways_import():
    sources = collect_sources(ROOT)
    packages = {module_name(p, ROOT) for p in ROOT.rglob("__init__.py")}
    assert len(sources) > 40  # the whole package was read, not an empty folder
    assert upward_edges(sources, packages) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # the edges this layering test was written to remove (issue 17)
        (
            "segdoctor.train.recipe",
            "def _callbacks():\n    from segdoctor.doctor import DoctorCallback\n",
            ["segdoctor.train.recipe -> segdoctor.doctor (line 2)"],
        ),
        (
            "segdoctor.doctor.api",
            "def load_model(p):\n    from segdoctor.train.inference import load_model\n",
            ["segdoctor.doctor.api -> segdoctor.train.inference (line 2)"],
        ),
        ("segdoctor.train.demo", "from segdoctor import doctor\n", ["segdoctor.train.demo -> segdoctor.doctor (line 1)"]),
        # upward from the bottom, and from runfiles
        ("segdoctor.data.masks", "import segdoctor.cli\n", ["segdoctor.data.masks -> segdoctor.cli (line 1)"]),
        ("segdoctor.runfiles", "from segdoctor.train import x\n", ["segdoctor.runfiles -> segdoctor.train (line 1)"]),
        ("segdoctor.metrics", "import importlib\nimportlib.import_module('segdoctor.doctor')\n", ["segdoctor.metrics -> segdoctor.doctor (line 2)"]),
        # relative imports are resolved
        ("segdoctor.train.recipe", "from ..doctor import api\n", ["segdoctor.train.recipe -> segdoctor.doctor (line 1)"]),
        # allowed: downward, within a group, the package root
        ("segdoctor.cli.train", "from segdoctor.train.recipe import train_run\nfrom segdoctor.doctor import Report\n", []),
        ("segdoctor.doctor.api", "from segdoctor.runfiles import load_model\nfrom .report import Report\n", []),
        ("segdoctor.train.data", "from segdoctor import data as sd\nfrom segdoctor import __version__\n", []),
        ("segdoctor.metrics", "from segdoctor.losses import dice_loss\nimport numpy\n", []),
    ],
)  # fmt: skip
def test_the_checker_finds_upward_and_sideways_imports(module, source, expected):
    assert upward_edges({module: source}) == expected


def test_a_module_without_a_layer_is_refused():
    with pytest.raises(KeyError, match="has no layer"):
        upward_edges({"segdoctor.plugins.x": "import os\n"})
