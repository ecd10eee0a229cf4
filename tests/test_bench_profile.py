"""The op profile's arithmetic (benchmarks/profile_step.py): the numbers RESULTS.md's op tables rest on.

The profile itself needs minutes of a CPU; these tests check, on hand-made inputs, what turns the
profilers' raw output into those tables: the FLOPs of a convolution from oneDNN's problem descriptor,
the sums of oneDNN's verbose lines between the markers, and the self time of nested trace events.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from benchmarks.profile_step import _self_times, categorize, conv_gflop, parse_onednn


def test_conv_gflop_counts_multiply_adds_twice():
    # 3x3, 3 -> 32 channels, 8 images of 256 x 256: 2 * 8 * 32 * 256 * 256 * 3 * 9 FLOPs
    desc = "mb8_ic3oc32_ih256oh256kh3sh1dh0ph1_iw256ow256kw3sw1dw0pw1"
    assert conv_gflop(desc) == pytest.approx(2 * 8 * 32 * 256 * 256 * 3 * 9 / 1e9)
    # a strided 2x2 (a transposed convolution's descriptor): the output size counts, not the input
    strided = "mb8_ic64oc128_ih128oh64kh2sh2dh0ph0_iw128ow64kw2sw2dw0pw0"
    assert conv_gflop(strided) == pytest.approx(2 * 8 * 128 * 64 * 64 * 64 * 4 / 1e9)
    # groups divide the input channels
    grouped = "mb1_g4ic8oc8_ih4oh4kh1sh1dh0ph0_iw4ow4kw1sw1dw0pw0"
    assert conv_gflop(grouped) == pytest.approx(2 * 8 * 16 * 2 / 1e9)


def _line(kind, impl, prop, desc, ms, dtype="bf16"):
    md = f"src:{dtype}::blocked:acdb::f0 wei:{dtype}:a:blocked:Acdb::f0"
    return f"onednn_verbose,v1,primitive,exec,cpu,{kind},{impl},{prop},{md},,alg:x,{desc},{ms}"


def test_parse_onednn_sums_between_the_markers_per_step():
    desc = "mb8_ic32oc32_ih256oh256kh3sh1dh0ph1_iw256ow256kw3sw1dw0pw1"
    text = "\n".join(
        [
            _line("convolution", "brg", "forward_training", desc, 99.0),  # warm-up: not counted
            "@@onednn-start",
            _line("convolution", "brg", "backward_weights", desc, 10.0),
            _line("convolution", "brg", "backward_weights", desc, 30.0),
            _line("batch_normalization", "bnorm", "backward", "mb8ic32ih256iw256", 4.0),
            "onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,brg,x,y,,z,w,1.0",
            "@@onednn-stop",
            _line("convolution", "brg", "backward_weights", desc, 77.0),  # after: not counted
        ]
    )
    totals, convs = parse_onednn(text, steps=2)
    assert totals == pytest.approx(
        {
            "convolution backward_weights brg (bf16)": 0.020,
            "batch_normalization backward bnorm (bf16)": 0.002,
        }
    )
    seconds, gflop = convs["backward_weights (bf16)"]
    assert seconds == pytest.approx(0.020)
    assert gflop == pytest.approx(conv_gflop(desc))  # two calls over two steps: one per step
    assert "forward_training (bf16)" not in convs


def _event(start, duration, mid):
    return SimpleNamespace(offset_ps=start, duration_ps=duration, metadata_id=mid)


def test_self_time_subtracts_nested_events_only():
    metadata = {
        1: SimpleNamespace(name="outer:Conv2D#id=1#"),
        2: SimpleNamespace(name="inner:Cast"),
        3: SimpleNamespace(name="after:Relu"),
    }
    events = [_event(0, 100, 1), _event(10, 30, 2), _event(100, 50, 3)]
    got = dict(_self_times(events, metadata))
    assert got == {"outer:Conv2D": 70, "inner:Cast": 30, "after:Relu": 50}


def test_categories():
    assert categorize("_MklNativeConv2DBackpropFilter") == "convolution"
    assert categorize("_MklNativeFusedBatchNormGradV3") == "batch norm"
    assert categorize("Mul", "adamw/mul_3") == "optimizer"
    assert categorize("Mul", "unet/dec1/mul") == "elementwise, loss and other"
