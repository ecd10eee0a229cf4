"""Layers of segdoctor's models that Keras provides but computes slower than it must.

:class:`BatchNormalization` is Keras' layer (same arguments, weights, checkpoints, and the same
``isinstance`` answer) with one change of computation: on the TensorFlow backend, for the common
case (4-D channels-last input, no mask, no renorm, not synchronized), it runs TensorFlow's fused
kernel (``FusedBatchNormV3``), which takes bfloat16 or float32 in and out and keeps its statistics
in float32, as PyTorch's batch norm does under autocast. Keras' own layer casts bfloat16 inputs to
float32 and computes the moments, the normalization and the cast back as separate ops: measured on
an AMD EPYC with AVX512-BF16 (U-Net of 7.8 M parameters, 8x256x256x3, bfloat16, interleaved rounds,
benchmarks/bench_throughput.py), the fused kernel made the whole training step 1.33x faster, from
0.82x to 1.09x of torch.compile with bfloat16 autocast. Every other backend and case runs Keras' own
code unchanged.

The results equal Keras' layer up to float rounding, moving statistics included (the fused kernel
returns the batch variance with Bessel's correction; it is taken back out, since Keras' moving
variance uses the biased one): tests/test_models.py checks both modes against the Keras layer.
"""

from __future__ import annotations

from typing import Any

import keras


def _fused_batch_norm() -> Any:
    # TensorFlow is a heavy optional backend: imported only when the layer runs on it.
    import tensorflow as tf  # noqa: PLC0415

    return tf.compat.v1.nn.fused_batch_norm


@keras.saving.register_keras_serializable(package="segdoctor")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with TensorFlow's fused kernel where it applies."""

    def _fuses(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fuses(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        fused = _fused_batch_norm()
        channels = inputs.shape[-1]
        gamma = self.gamma.value if self.scale else keras.ops.ones((channels,), "float32")
        beta = self.beta.value if self.center else keras.ops.zeros((channels,), "float32")
        if training and self.trainable:
            out, mean, variance = fused(inputs, gamma, beta, epsilon=self.epsilon, is_training=True)
            shape = keras.ops.shape(inputs)
            n = keras.ops.cast(shape[0] * shape[1] * shape[2], "float32")
            variance = variance * (n - 1.0) / keras.ops.maximum(n, 2.0)  # Bessel's, undone
            keep = self.momentum
            self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
            self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
        else:
            out, _, _ = fused(
                inputs,
                gamma,
                beta,
                mean=self.moving_mean.value,
                variance=self.moving_variance.value,
                epsilon=self.epsilon,
                is_training=False,
            )
        return keras.ops.cast(out, self.compute_dtype)


@keras.saving.register_keras_serializable(package="segdoctor")
class UpSampling2D(keras.layers.UpSampling2D):
    """``keras.layers.UpSampling2D`` that also resizes inputs of unknown size on TensorFlow.

    Keras' bilinear path computes the target size from the input's shape and checks it with a
    Python comparison, which fails in a TensorFlow graph when height and width are unknown
    (``OperatorNotAllowedInGraphError``): exactly the case of a fully convolutional model
    validated on whole images of varying size, where the auxiliary heads of deep supervision
    are upsampled (Keras 3.15). There this layer calls ``tf.image.resize`` with the dynamic size,
    the op Keras' own TensorFlow resize ends in; everything else runs Keras' code.
    """

    def call(self, inputs):
        if (
            keras.backend.backend() != "tensorflow"
            or self.interpolation == "nearest"
            or self.data_format != "channels_last"
        ):
            return super().call(inputs)
        import tensorflow as tf  # noqa: PLC0415 - only on the TensorFlow backend

        shape = tf.shape(inputs)  # (B, H, W, C), H and W possibly unknown until run time
        size = tf.stack([shape[1] * self.size[0], shape[2] * self.size[1]])
        return tf.image.resize(inputs, size, method=self.interpolation)
