"""Reading a training history: a Keras ``CSVLogger`` file, a JSON dump, or the dict itself.

Everything the history checks (:mod:`segdoctor.doctor.history`) read goes through
:func:`load_history`, which returns plain ``{name: [float, ...]}`` curves (NaN for a missing
value); :func:`is_dice_like` tells which curves go up when segmentation improves.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from segdoctor.errors import DataError

History = dict[str, list[float]]
_DICE_WORDS = ("dice", "iou", "io_u", "jaccard", "f1", "fscore", "f_score")
PRED_FG, TRUE_FG = "doctor_pred_fg", "doctor_true_fg"


def is_dice_like(name: str) -> bool:
    """True for metric names that go *up* when segmentation improves (Dice, IoU, F1, Jaccard).

    Example:
        >>> is_dice_like("val_dice_coef"), is_dice_like("val_loss"), is_dice_like("dice_loss")
        (True, False, False)
    """
    low = name.lower().replace("-", "_")
    return any(w in low for w in _DICE_WORDS) and "loss" not in low


def load_history(source: str | Path | Mapping[str, Sequence[float]]) -> History:
    """Read a history from a CSVLogger file, a JSON file, or a mapping.

    Raises:
        DataError: the file is missing, empty, or neither CSV with an ``epoch`` column nor JSON
            mapping names to lists of numbers.

    Example:
        >>> load_history({"loss": [1, 0.5]})
        {'loss': [1.0, 0.5]}
    """
    if isinstance(source, Mapping):
        return _clean(source, "the given mapping")
    path = Path(source)
    if not path.is_file():
        raise DataError(f"History file not found: {path}", fix="pass the CSVLogger or JSON file.")
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    if not text:
        raise DataError(f"History file is empty: {path}", fix="pass a non-empty log.")
    if text[0] == "{":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"History file {path} is not valid JSON ({err})") from None
        if isinstance(data, Mapping) and isinstance(data.get("history"), Mapping):
            data = data["history"]
        return _clean(data, str(path))
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip() for h in rows[0]]
    if "epoch" not in header and "loss" not in header:
        raise DataError(
            f"Unknown history format in {path}",
            expected="a Keras CSVLogger file (header with 'epoch') or a JSON dump of History.history",
            received=f"first line {text.splitlines()[0][:80]!r}",
            fix="log with keras.callbacks.CSVLogger(path) or json.dump(history.history, f).",
        )
    columns: dict[str, list[float]] = {h: [] for h in header if h != "epoch"}
    for row in rows[1:]:
        for name, cell in zip(header, row, strict=False):
            if name != "epoch":
                columns[name].append(_to_float(cell))
    return _clean(columns, str(path))


def _to_float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan


def _clean(data: object, where: str) -> History:
    if not isinstance(data, Mapping) or not data:
        raise DataError(
            f"Unknown history format in {where}",
            expected="a mapping of metric names to lists of numbers",
            received=type(data).__name__,
        )
    out: History = {}
    for key, values in data.items():
        if isinstance(values, (list, tuple)) and all(
            isinstance(v, (int, float)) or v is None for v in values
        ):
            out[str(key)] = [math.nan if v is None else float(v) for v in values]
    if not out:
        raise DataError(f"No numeric curves in history {where}", expected="lists of numbers")
    return out
