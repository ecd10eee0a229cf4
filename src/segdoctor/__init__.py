"""segdoctor: train segmentation models with Dice the right way, and find out why validation Dice
is not improving.

Importing segdoctor never fails because ``KERAS_BACKEND`` is unset: a backend is chosen before Keras
is imported (see :mod:`segdoctor._backend`). Submodules import Keras lazily.
"""

from segdoctor._backend import ensure_backend as _ensure_backend

__version__ = "0.1.0"

_ensure_backend()

__all__ = ["__version__"]
