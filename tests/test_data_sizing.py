"""Sizing: stride multiples, crops, and sliding-window inference mapped back to the original size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdoctor.data import (
    pad_to_multiple,
    resize_back,
    resize_to_multiple,
    sliding_window_predict,
    unpad,
)
from segdoctor.data.sizing import crop
from segdoctor.errors import ConfigError


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 90), st.integers(1, 90), st.sampled_from([8, 16, 32]))
def test_pad_to_multiple_round_trip(h, w, multiple):
    array = np.random.default_rng(h * w).random((h, w, 2)).astype(np.float32)
    padded, info = pad_to_multiple(array, multiple)
    assert padded.shape[0] % multiple == 0 and padded.shape[1] % multiple == 0
    assert padded.shape[0] - h < multiple and padded.shape[1] - w < multiple
    np.testing.assert_array_equal(unpad(padded, info), array)


def test_resize_mask_keeps_values_and_maps_back():
    mask = np.kron(np.array([[0, 3], [7, 1]]), np.ones((25, 30), np.int64))  # (50, 60)
    resized = resize_to_multiple(mask, 32, is_mask=True)
    assert resized.shape == (64, 64)
    assert set(np.unique(resized)) == {0, 1, 3, 7}
    back = resize_back(resized, (50, 60), is_mask=True)
    assert (back == mask).mean() > 0.97


def test_crop_outside_is_filled():
    array = np.arange(12).reshape(3, 4)
    out = crop(array, (-1, 2), (3, 4), fill=-5)
    assert out.tolist() == [[-5, -5, -5, -5], [2, 3, -5, -5], [6, 7, -5, -5]]


@pytest.mark.parametrize("blend", ["gaussian", "flat"])
@settings(deadline=None, max_examples=10)
@given(h=st.integers(5, 120), w=st.integers(5, 120), overlap=st.sampled_from([0.0, 0.25, 0.5]))
def test_sliding_window_reconstructs_pointwise_models(blend, h, w, overlap):
    image = np.random.default_rng(h + w).random((h, w, 2)).astype(np.float32)

    def model(batch):  # (B, 32, 32, 2) -> (B, 32, 32, 3): a per-pixel function
        return np.concatenate([batch * 3, batch[..., :1] - 1], axis=-1)

    out = sliding_window_predict(model, image, 32, overlap, blend=blend, batch_size=3)
    assert out.shape == (h, w, 3)
    np.testing.assert_allclose(out[..., :2], image * 3, atol=1e-5)
    np.testing.assert_allclose(out[..., 2], image[..., 0] - 1, atol=1e-5)


def test_sliding_window_blends_overlaps():
    image = np.zeros((64, 64, 1), np.float32)
    calls = []

    def model(batch):  # output depends on the patch position: blending must average them
        calls.append(len(batch))
        out = np.zeros_like(batch)
        out[:] = np.arange(len(batch), dtype=np.float32)[:, None, None, None] + len(calls) * 10
        return out

    out = sliding_window_predict(model, image, 32, 0.5, blend="flat", batch_size=16)
    assert sum(calls) == 9  # starts 0, 16, 32 in each axis
    assert out[0, 0, 0] == 10.0  # only the first window covers the corner
    assert out[20, 20, 0] == pytest.approx(np.mean([10, 11, 13, 14]))  # four windows overlap


def test_sliding_window_errors():
    image = np.zeros((40, 40, 1), np.float32)
    with pytest.raises(ConfigError, match="overlap"):
        sliding_window_predict(lambda x: x, image, 32, 1.0)
    with pytest.raises(ConfigError, match="unexpected shape"):
        sliding_window_predict(lambda x: x[:, :16], image, 32, 0.5)
