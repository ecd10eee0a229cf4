"""The training recipe: configuration, fit, callbacks, LR range test, evaluation and reports.

Example:
    >>> from segdoctor.train import resolve_config
    >>> resolve_config(overrides={"data.path": "data", "train.epochs": "5"}).train.epochs
    5
"""

from segdoctor.train.config import RunConfig, resolve_config

__all__ = ["RunConfig", "resolve_config"]
