"""Is the model a function in inference mode? Layers forced into training mode, random calls.

A layer called as ``layer(x, training=True)`` in a functional model (Monte Carlo dropout code
copied into a plain model, a noise layer meant for training) is recorded so in the graph.
Keras 3's ``fit`` validation, ``evaluate`` and ``predict`` pass ``training=False`` explicitly,
which wins over the recorded flag (measured: two ``predict`` calls agree); a direct ``model(x)``
without ``training=`` does not, so a custom loop, a hand-written validation or an inference
script runs those layers in training mode: a randomly thinned network whose Dice moves from call
to call. A model whose ``call`` draws random numbers whatever the flag (a subclassed model) is
stochastic in ``evaluate`` and ``predict`` as well: it is found by calling it twice on the same
input with ``training=False``.

Example:
    >>> import keras
    >>> x = keras.Input((16, 16, 1))
    >>> h = keras.layers.Dropout(0.5)(keras.layers.Conv2D(4, 3, padding="same")(x), training=True)
    >>> m = keras.Model(x, keras.layers.Conv2D(1, 1)(h))
    >>> [(f.id, f.severity, f.evidence["layers"]) for f in check_inference(m)]
    [('inference-stochastic', 'warning', ['dropout'])]
"""

from __future__ import annotations

import keras
import numpy as np

from segdoctor.doctor.catalog import make_finding
from segdoctor.doctor.findings import Finding

PROBE_SIDE = 64
"""Side of the random input for the two calls (spatial dimensions the model leaves open)."""
SAME_TOLERANCE = 1e-4
"""Largest difference between the two calls' outputs (relative to their scale) that counts as
the same output: float32 reductions in another order differ by about 1e-6."""


def forced_training_layers(model) -> list[str]:
    """Layers of a functional model called with ``training=True`` (recorded in its graph)."""
    names = []
    for layer in getattr(model, "layers", []):
        nodes = getattr(layer, "_inbound_nodes", [])
        if any(
            getattr(getattr(n, "arguments", None), "kwargs", {}).get("training") is True
            for n in nodes
        ):
            names.append(layer.name)
        if isinstance(layer, keras.Model) and layer is not model:
            names += forced_training_layers(layer)
    return names


def _probe_input(model) -> np.ndarray | None:
    """One random image of the model's input shape (open dimensions: :data:`PROBE_SIDE`)."""
    shape = getattr(model, "input_shape", None)
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] is None:
        return None  # several inputs, or not an image model
    size = [PROBE_SIDE if d is None else int(d) for d in shape[1:3]]
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, *size, int(shape[-1]))).astype("float32")


def output_spread(model, x: np.ndarray, training: bool | None) -> float | None:
    """Largest difference between two calls on ``x`` (``training`` passed as given, None: not
    passed), over the output's scale; None when the model cannot run on ``x``."""
    kwargs = {} if training is None else {"training": training}
    try:
        first, second = (keras.ops.convert_to_numpy(model(x, **kwargs)) for _ in range(2))
    except Exception:  # a model that cannot run on this input: not judged here
        return None
    first, second = np.asarray(first, "float64"), np.asarray(second, "float64")
    scale = max(float(np.abs(first).max()), 1e-6)
    return float(np.abs(first - second).max()) / scale


def check_inference(model, x: np.ndarray | None = None) -> list[Finding]:
    """``inference-stochastic``: an error when two ``training=False`` calls on the same input
    (``x``, else a random image) differ by more than :data:`SAME_TOLERANCE` (evaluate and predict
    are random); a warning when layers are called with ``training=True`` in the graph (direct
    ``model(x)`` calls are random)."""
    layers = forced_training_layers(model)
    x = _probe_input(model) if x is None else x[:1]
    if x is None:
        return []
    spread = output_spread(model, x, training=False)
    if spread is not None and spread > SAME_TOLERANCE:
        evidence = {
            "layers": layers[:10],
            "relative_difference_in_inference_mode": round(spread, 4),
        }
        return [make_finding("inference-stochastic", evidence, variant="random", severity="error")]
    if not layers:
        return []
    direct = output_spread(model, x, training=None)
    evidence = {
        "layers": layers[:10],
        "relative_difference_of_two_model_x_calls": None if direct is None else round(direct, 4),
    }
    augmentation = _augmentation_layers(model)
    if all(name in augmentation for name in layers):
        # Keras' augmentation layers default to training=True, and the graph records it: the
        # recommended pattern (augmentation inside the model) is not the MC-dropout mistake
        # (fourth blind test: a healthy twin with RandomBrightness/RandomContrast drew the
        # warning, whose text said they were "called with training=True").
        return [
            make_finding("inference-stochastic", evidence, variant="augmentation", severity="info")
        ]
    return [make_finding("inference-stochastic", evidence)]


def _augmentation_layers(model) -> set[str]:
    """Names of Keras' random augmentation layers in ``model`` (nested models included)."""
    names = set()
    for layer in getattr(model, "layers", []):
        module = type(layer).__module__
        if type(layer).__name__.startswith("Random") and "preprocessing" in module:
            names.add(layer.name)
        if isinstance(layer, keras.Model) and layer is not model:
            names |= _augmentation_layers(layer)
    return names
