"""Run-folder files and safe model loading: the layer below both ``train`` and ``doctor``.

``train`` writes a run folder and loads its checkpoints; the doctor and the commands load a model
file or a run folder's best model. Both go through :func:`load_model`, which loads with Keras
``safe_mode=True``: a model that needs arbitrary code to deserialize (a ``Lambda`` layer) is refused
with an explanation, unless the user opts in with ``unsafe=True``.

Example:
    >>> from segdoctor.runfiles import MODEL_FILES
    >>> MODEL_FILES
    ('best.keras', 'last.keras')
"""

from __future__ import annotations

import importlib
from pathlib import Path

import keras

from segdoctor.errors import ModelLoadError

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
    for module in ("segdoctor.losses", "segdoctor.metrics"):  # register segdoctor's objects
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
