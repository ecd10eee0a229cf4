"""bfloat16 or float32 from a measurement on the machine at hand, cached per machine (issue 18).

The decision rule and the cache are tested with a fake step timer (the numbers are the test's);
the real probe runs on every backend in tests/test_fit_backends.py.
"""

from __future__ import annotations

import json

import pytest

from segdoctor.train import calibration, environment


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Calibration on, its cache in a temporary folder; returns the cache file's path."""
    monkeypatch.setenv(calibration.CALIBRATION_ENV, "on")
    monkeypatch.setenv(calibration.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "calibration.json"


class FakeTimer:
    def __init__(self, fp32: float, bf16: float) -> None:
        self.seconds = {"float32": fp32, "mixed_bfloat16": bf16}
        self.calls = 0

    def __call__(self) -> dict[str, float]:
        self.calls += 1
        return dict(self.seconds)


def test_measured_once_then_read_from_the_cache(measuring):
    timer = FakeTimer(fp32=1.0, bf16=0.33)
    first = calibration.calibrate_precision("AMX", timer)
    assert first["bfloat16"] is True and first["ratio"] == pytest.approx(0.33)
    assert first["cached"] is None and timer.calls == 1
    again = calibration.calibrate_precision("AMX", timer)
    assert timer.calls == 1  # not measured again
    assert again["cached"] == str(measuring)
    assert again["mixed_bfloat16_s"] == first["mixed_bfloat16_s"]
    assert again["key"] == calibration.machine_key("AMX")
    # another machine (here: other bfloat16 units) is measured for itself, the first one kept
    calibration.calibrate_precision(None, FakeTimer(fp32=1.0, bf16=2.5))
    assert len(json.loads(measuring.read_text())) == 2


@pytest.mark.parametrize(
    ("bf16", "chosen"), [(0.5, True), (0.9, True), (0.95, False), (2.0, False)]
)
def test_bfloat16_only_for_a_clear_gain(measuring, bf16, chosen):
    record = calibration.calibrate_precision("AVX512-BF16", FakeTimer(fp32=1.0, bf16=bf16))
    assert record["bfloat16"] is chosen


def test_switched_off_measures_nothing(measuring, monkeypatch):
    monkeypatch.setenv(calibration.CALIBRATION_ENV, "off")
    timer = FakeTimer(1.0, 0.3)
    assert calibration.calibrate_precision("AMX", timer) is None
    assert timer.calls == 0 and not measuring.exists()


def test_an_unreadable_cache_is_measured_again_and_rewritten(measuring):
    measuring.parent.mkdir(parents=True)
    measuring.write_text("{not json")
    timer = FakeTimer(1.0, 0.4)
    assert calibration.calibrate_precision("AMX", timer)["bfloat16"] is True
    assert timer.calls == 1
    assert calibration.machine_key("AMX") in json.loads(measuring.read_text())


def _as_tensorflow_cpu(monkeypatch, units):
    monkeypatch.setattr(environment.keras.backend, "backend", lambda: "tensorflow")
    monkeypatch.setattr(environment, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(calibration, "machine_key", lambda u: f"test-machine {u}")


def test_auto_on_tensorflow_cpu_follows_the_measurement(measuring, monkeypatch):
    _as_tensorflow_cpu(monkeypatch, "AMX")
    logged = []
    fast = environment.choose_precision("auto", logged.append, FakeTimer(0.9, 0.3))
    assert fast.bfloat16 is True
    assert "0.300 s in bfloat16 and 0.900 s in float32" in fast.why
    assert logged and "once; cached in" in logged[0]
    record = fast.to_dict()
    assert record["measured"]["float32_s"] == 0.9 and record["measured"]["cached"] is False
    # the same CPU flags, a measurement that says otherwise: float32 (the flags do not decide)
    measuring.unlink()
    slow = environment.choose_precision("auto", None, FakeTimer(0.9, 1.2))
    assert slow.bfloat16 is False and "1.33x" in slow.why
    # cached: no new timing, and the sentence says when it was measured
    cached = environment.choose_precision("auto", None, FakeTimer(0.1, 5.0))
    assert cached.bfloat16 is False and "cached" in cached.why
    # explicit settings win without measuring
    timer = FakeTimer(1.0, 0.1)
    assert environment.choose_precision("off", None, timer).bfloat16 is False
    assert environment.choose_precision("on", None, timer).bfloat16 is True
    assert timer.calls == 0


def test_a_failing_probe_means_float32(measuring, monkeypatch):
    _as_tensorflow_cpu(monkeypatch, "AMX")

    def broken():
        raise RuntimeError("no bfloat16 kernel for Conv2D")

    choice = environment.choose_precision("auto", None, broken)
    assert choice.bfloat16 is False and "no bfloat16 kernel" in choice.why


def test_without_measurement_the_flags_decide(monkeypatch):
    monkeypatch.setenv(calibration.CALIBRATION_ENV, "off")
    _as_tensorflow_cpu(monkeypatch, "AVX512-BF16")
    assert environment.choose_precision("auto").bfloat16 is True
    _as_tensorflow_cpu(monkeypatch, None)
    choice = environment.choose_precision("auto")
    assert choice.bfloat16 is False and "not measured" in choice.why
