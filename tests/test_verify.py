"""--verify: paired per-image statistics, prescriptions, the corrected copy, one end-to-end run."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from segdoctor import data as sd
from segdoctor.cli import main
from segdoctor.cli import verify as vf
from segdoctor.doctor import Report, make_finding
from segdoctor.sample_data import sample_path

TINY = {
    "data.patch_size": "32",
    "model.base_filters": "8",
    "model.depth": "2",
    "data.batch_size": "4",
}


def _crops(root: Path, n: int = 20, size: int = 32, scale: int = 255) -> Path:
    """``n`` size x size crops of the bundled nuclei sample, masks stored as 0/``scale``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for pair in sd.discover_pairs(sample_path()).pairs[:n]:
        image, mask = sd.read_pair(pair)
        fg = (mask > 0).astype(np.int64)  # (H, W)
        # the window with the most foreground (integral image), so that validation is scored
        s = np.pad(fg.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        win = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
        y, x = np.unravel_index(np.argmax(win), win.shape)
        crop = image[y : y + size, x : x + size, 0]
        Image.fromarray(crop).save(root / "images" / f"{pair.name}.png")
        stored = (fg[y : y + size, x : x + size] * scale).astype(np.uint8)
        Image.fromarray(stored).save(root / "masks" / f"{pair.name}.png")
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def crops255(tmp_path_factory) -> Path:
    return _crops(tmp_path_factory.mktemp("verify") / "data")


# --------------------------------------------------------------------------------------------
# statistics


def test_paired_difference_agrees_with_numpy_and_drops_unpaired_images():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 0.9, 200)
    b = a - 0.05 + rng.normal(0, 0.05, 200)
    fixed = {f"i{k}": float(v) for k, v in enumerate(a)}
    diagnosed = {f"i{k}": float(v) for k, v in enumerate(b)}
    fixed["nan"], diagnosed["nan"] = float("nan"), 0.3  # scored by one side only
    fixed["only_fixed"] = 1.0
    r = vf.paired_difference(fixed, diagnosed)
    d = a - b
    assert r["images"] == 200
    assert r["mean_difference"] == pytest.approx(d.mean())
    assert r["median_difference"] == pytest.approx(np.median(d))
    assert r["wins"] == int((d > 1e-4).sum()) and r["losses"] == int((d < -1e-4).sum())
    # the bootstrap percentile interval matches the normal-theory interval for 200 images
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    lo, hi = r["ci95"]
    assert lo == pytest.approx(d.mean() - half, abs=0.2 * half)
    assert hi == pytest.approx(d.mean() + half, abs=0.2 * half)
    assert r["p_value"] < 0.001


def test_paired_difference_of_noise_includes_zero_and_has_a_large_p_value():
    rng = np.random.default_rng(2)
    d = rng.normal(0, 0.05, 40)
    r = vf.paired_difference(
        {str(k): 0.5 + v for k, v in enumerate(d)}, {str(k): 0.5 for k in range(40)}
    )
    assert r["ci95"][0] < 0 < r["ci95"][1] or abs(d.mean()) > 1.96 * d.std() / np.sqrt(40)
    assert r["p_value"] > 0.01
    assert vf.paired_difference({"a": float("nan")}, {"a": 0.5}) == {"images": 0}


def test_an_empty_mask_predicted_empty_counts_against_a_run_that_predicts_foreground():
    """The lr-too-high case of 2026-12-06: the fix predicted nothing on 2 empty validation crops
    (NaN under the skip policy), the diagnosed run predicted foreground there (0.0)."""
    nan = float("nan")
    fixed = {"a": 0.90, "b": 0.85, "e1": nan, "e2": nan, "both": nan}
    diagnosed = {"a": 0.95, "b": 0.90, "e1": 0.0, "e2": 0.0, "both": nan}
    left_out = vf.paired_difference(fixed, diagnosed)
    assert left_out["images"] == 2 and left_out["mean_difference"] == pytest.approx(-0.05)
    counted = vf.paired_difference(fixed, diagnosed, empty_correct=1.0)
    assert counted["images"] == 4 and counted["empty_scored"] == 2  # "both": no difference
    assert counted["mean_difference"] == pytest.approx((2 - 0.10) / 4)
    assert counted["wins"] == 2 and counted["losses"] == 2
    assert vf.runs.EMPTY_CORRECT == 1.0  # what --verify compares with


def test_verdict_says_plainly_when_the_short_run_cannot_tell_the_two_apart():
    same = vf.verdict({"images": 12, "mean_difference": 0.01, "ci95": [-0.02, 0.04]})
    assert same.startswith("The short run cannot tell the two apart")
    assert "includes 0" in same
    better = vf.verdict({"images": 12, "mean_difference": 0.2, "ci95": [0.1, 0.3]})
    assert "raised" in better and "cannot tell" not in better
    few = vf.verdict({"images": 2, "mean_difference": 0.5, "ci95": [0.4, 0.6]})
    assert few.startswith("The short run cannot tell the two apart") and "only 2" in few
    leak = vf.verdict({"images": 9, "mean_difference": -0.1, "ci95": [-0.2, -0.05]}, "down")
    assert "inflated" in leak


def _verification(ci, diagnosed_curve, noise=0.0):
    gaining = vf.results.still_gaining(diagnosed_curve)
    comparison = {"images": 5, "ci95": ci, "diagnosed_still_gaining": gaining, "seed_noise": noise}
    diagnosed = vf.RunScore(
        "as diagnosed", "completed", len(diagnosed_curve), curve=diagnosed_curve
    )
    prescription = vf.Prescription("mask-lossy-format", "snap", "as stored", {}, {})
    return vf.Verification(prescription, diagnosed, diagnosed, comparison, "")


def test_an_interval_above_what_the_diagnosed_run_still_gained_is_an_improvement():
    plateau = [0.30, 0.55, 0.62, 0.64, 0.65, 0.64, 0.65, 0.65]  # second half: +0.01
    assert _verification([0.05, 0.1], plateau).improved
    assert vf.runs.still_learning({"ci95": [0.05, 0.1], "diagnosed_still_gaining": 0.01}, 8) == ""


def test_an_interval_above_0_within_the_seed_noise_is_not_an_improvement():
    plateau = [0.30, 0.55, 0.62, 0.64, 0.65, 0.64, 0.65, 0.65]
    assert _verification([0.05, 0.1], plateau, noise=0.04).improved
    assert not _verification([0.05, 0.1], plateau, noise=0.06).improved
    assert not _verification([0.05, 0.1], plateau, noise=None).improved  # not measured
    said = vf.runs.beyond_noise({"ci95": [0.05, 0.1], "seed_noise": 0.06}, None)
    assert "differed by 0.0600" in said and "Not counted" in said
    assert "clears the seed noise" in vf.runs.beyond_noise(
        {"ci95": [0.05, 0.1], "seed_noise": 0.04}, None
    )
    assert "did not train" in vf.runs.beyond_noise({"ci95": [0.05, 0.1], "seed_noise": None}, None)
    assert vf.runs.beyond_noise({"ci95": [-0.05, 0.1], "seed_noise": 0.5}, None) == ""


def test_two_as_diagnosed_runs_far_apart_are_called_unstable_and_close_ones_are_not():
    a = vf.RunScore("as diagnosed", "completed", 80, per_image={"x": 0.76, "y": 0.75})
    collapsed = vf.RunScore("another seed", "completed", 80, per_image={"x": 0.15, "y": 0.14})
    close = vf.RunScore("another seed", "completed", 80, per_image={"x": 0.75, "y": 0.74})
    noise = vf.runs.seed_noise(a, collapsed, 0)
    said = vf.runs.unstable(a, collapsed, {"seed_noise": noise})
    assert "0.755 and 0.145" in said and "unstable from seed to seed" in said
    assert vf.runs.unstable(a, close, {"seed_noise": vf.runs.seed_noise(a, close, 0)}) == ""
    assert vf.runs.unstable(a, None, {"seed_noise": None}) == ""
    below = vf.runs.UNSTABLE_SEEDS - 0.01
    assert vf.runs.unstable(a, collapsed, {"seed_noise": below}) == ""


def test_the_seed_noise_is_the_mean_difference_of_two_as_diagnosed_runs():
    a = vf.RunScore("as diagnosed", "completed", 4, per_image={"x": 0.8, "y": 0.6, "z": 0.7})
    b = vf.RunScore("another seed", "completed", 4, per_image={"x": 0.7, "y": 0.5, "z": 0.7})
    assert vf.runs.seed_noise(a, b, 0) == pytest.approx(0.2 / 3)
    assert vf.runs.seed_noise(a, None, 0) is None
    short = vf.RunScore("another seed", "time budget", 3, per_image=b.per_image)
    assert vf.runs.seed_noise(a, short, 0) is None  # fewer epochs: not the same settings


def test_an_interval_above_0_while_the_diagnosed_run_still_climbs_is_not():
    # the JPEG-mask case's shape: +0.064 [+0.019, +0.105] after 7 epochs, gone after 55
    climbing = [0.20, 0.35, 0.45, 0.52, 0.58, 0.63, 0.67]  # second half: +0.15
    assert not _verification([0.019, 0.105], climbing).improved
    said = vf.runs.still_learning({"ci95": [0.019, 0.105], "diagnosed_still_gaining": 0.15}, 7)
    assert "still gaining +0.1500" in said and "7 epochs" in said
    assert not _verification([0.3, 0.5], [0.2, 0.4]).improved  # 2 epochs: too short to tell
    assert "too few" in vf.runs.still_learning({"ci95": [0.3, 0.5]}, 2)
    assert vf.runs.still_learning({"ci95": [-0.02, 0.1]}, 3) == ""  # nothing claimed


def test_the_run_length_rule_reads_the_validation_curve_of_a_run(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,val_dice\n0,0.9,0.2\n1,0.7,\n2,0.5,0.6\n")
    curve = vf.runs._val_dice_curve(history)
    assert curve[0] == 0.2 and np.isnan(curve[1]) and curve[2] == 0.6
    assert vf.runs._val_dice_curve(tmp_path / "missing.csv") == []
    assert vf.results.still_gaining([0.2, float("nan"), 0.6, 0.5, 0.7]) == pytest.approx(0.1)


def test_a_run_without_scores_is_reported_as_such_never_as_a_difference():
    fixed = vf.RunScore("with the fix", "completed", 3, 1.0, {"a": 0.8})
    failed = vf.RunScore("as diagnosed", "failed", error="DataError: cannot read x.png")
    assert "cannot train (DataError: cannot read x.png)" in vf._failed_verdict(failed, fixed)
    assert "Dice 0.8000" in vf._failed_verdict(failed, fixed)
    unscored = vf.RunScore("as diagnosed", "time budget (1 min)")
    assert "without a scored epoch" in vf._failed_verdict(unscored, fixed)
    assert unscored.dice_mean is None and fixed.dice_mean == 0.8


def test_unreadable_pairs_are_kept_out_of_the_split_and_given_to_the_diagnosed_run(tmp_path):
    data = _crops(tmp_path / "d", n=6)
    broken = sorted((data / "images").iterdir())[0]
    broken.write_bytes(b"not a png")
    plan = vf.plan_data(data, check_readable=True)
    assert [p.name for p in plan.unreadable] == [broken.stem]
    assert broken.stem not in {p.name for p in [*plan.train, *plan.val]}
    found, _ = vf.prescribe(_report(("unreadable-file", {"count": 1})), plan)
    assert found[0].extra_train == (broken.stem,) and found[0].drop_train == ()


def test_plan_budget_gives_every_run_an_equal_share_and_skips_what_does_not_fit():
    assert vf.plan_budget(3.0, 2) == (1.5, 2)  # three runs of at least 0.5 minutes each
    minutes, count = vf.plan_budget(4.0, 5)
    assert count == 2 and minutes == pytest.approx(2.0)
    assert vf.plan_budget(1.4, 3) == (0.0, 0)
    # a later run: an equal part of what is left of 85% of the share, at least 3x the first run
    assert vf._later_run_minutes(10.0, 2.0, 2.0, 1) == pytest.approx(6.0)  # 3x the first
    assert vf._later_run_minutes(10.0, 1.0, 1.0, 1) == pytest.approx(3.75)  # (8.5 - 1) / 2
    assert vf._later_run_minutes(10.0, 4.0, 1.0, 2) == pytest.approx(4.5)  # the last run
    assert vf._later_run_minutes(1.0, 0.1, 0.1, 1) == pytest.approx(0.5)  # at least 0.5 min


# --------------------------------------------------------------------------------------------
# prescriptions


def _report(*ids_and_evidence) -> Report:
    return Report([make_finding(i, ev, "fix") for i, ev in ids_and_evidence])


def test_prescribe_maps_findings_to_recipe_changes_and_says_what_it_cannot_verify():
    report = _report(
        ("mask-scale-255", {"values": [0, 255]}),
        ("input-not-normalized", {}),
        ("dice-smooth-large", {}),
        ("output-activation-missing", {}),
        ("class-imbalance", {"foreground_fraction": 0.01}),
        ("empty-masks", {"empty": 5, "of": 10}),
        ("dropout-high", {"layers": ["d"], "rates": [0.6]}),
        ("val-better-than-train", {}),  # info: not a prescription
    )
    found, other = vf.prescribe(report, vf.DataPlan(Path("."), [], []))
    by_id = {p.finding_id: p for p in found}
    oversample = {"class-imbalance", "empty-masks"} & set(by_id)  # the same runs: measured once
    assert len(oversample) == 1
    assert set(by_id) == {"mask-scale-255", "dropout-high", *oversample}
    assert by_id[oversample.pop()].diagnosed == {"data.foreground_oversample": "0"}
    mask = by_id["mask-scale-255"]
    assert mask.diagnosed == {"data.mask_policy": "multiclass"}
    assert mask.fixed == {"data.mask_policy": "auto"}
    assert mask.foreground(np.array([0, 255, 7])).tolist() == [False, True, False]
    assert by_id["dropout-high"].diagnosed == {"model.dropout": "0.6"}
    status = {u.finding_id: u.status for u in other}
    assert {k: v for k, v in status.items() if v != "skipped"} == {
        "input-not-normalized": "recipe-fixes-it",
        "dice-smooth-large": "not-verifiable",
        "output-activation-missing": "not-verifiable",
    }
    assert list(status.values()).count("skipped") == 1
    assert "val-better-than-train" not in status


@pytest.mark.parametrize(
    ("evidence", "fixed"),
    [
        ({"configured_lr": 0.1, "steepest_lr": 0.02, "diverge_lr": 0.1}, "0.002"),  # range test
        ({"learning_rate": 0.1, "relative_update_per_step": 0.5, "optimizer": "Adam"}, "0.002"),
        ({"learning_rate": None, "relative_update_per_step": 0.5}, None),  # a schedule: no rate
    ],
)
def test_learning_rate_prescription_from_either_lr_too_high_evidence(evidence, fixed):
    found, other = vf.prescribe(_report(("lr-too-high", evidence)), vf.DataPlan(Path("."), [], []))
    if fixed is None:
        assert not found and [u.status for u in other] == ["not-verifiable"]
        return
    assert found[0].diagnosed == {"train.lr": "0.1"} and found[0].fixed == {"train.lr": fixed}


def test_run_config_applies_the_prescription_over_the_short_run_settings(tmp_path):
    cfg = vf.run_config(
        tmp_path / "t.csv",
        tmp_path / "v.csv",
        {"data.mask_policy": "multiclass"},
        settings=TINY,
        epochs=5,
        minutes=0.5,
        seed=3,
    )
    assert cfg.data.mask_policy == "multiclass" and cfg.data.patch_size == 32
    assert cfg.data.path == str(tmp_path / "t.csv") and cfg.data.val_path == str(tmp_path / "v.csv")
    assert (cfg.train.epochs, cfg.train.max_minutes, cfg.train.seed) == (5, 0.5, 3)
    assert cfg.train.lr == 0.001 and cfg.train.doctor is False
    # one pass per epoch: a budgeted recipe would otherwise lengthen the epochs, and the
    # comparison's "still gaining" rule needs the per-epoch curve
    assert cfg.data.samples_per_epoch is None and cfg.is_explicit("data.samples_per_epoch")


def test_leak_prescription_drops_the_training_copies_of_validation_images(tmp_path):
    data = _crops(tmp_path / "d", n=6)
    plan = vf.plan_data(data, seed=0)
    leaked = plan.train[0]
    copy = sd.Pair("copy", leaked.image, leaked.mask, "val")
    plan = vf.DataPlan(data, plan.train, [*plan.val, copy])
    found, other = vf.prescribe(_report(("duplicate-across-splits", {})), plan)
    assert not other and found[0].drop_train == (leaked.name,) and found[0].expect == "down"
    clean = vf.prescribe(_report(("duplicate-across-splits", {})), vf.plan_data(data))
    assert clean[0] == [] and clean[1][0].status == "not-verifiable"


def _leaked_copy_dropped(tmp_path, change) -> None:
    """The leak prescription drops the training image whose ``change`` (of the image, and of
    its mask for geometric changes) is added to the validation images."""
    data = _crops(tmp_path / "d", n=6)
    plan = vf.plan_data(data, seed=0)
    leaked = plan.train[0]
    image, mask = sd.read_pair(leaked)
    new_image, new_mask = change(image[..., 0], mask)
    (tmp_path / "c").mkdir()
    Image.fromarray(np.ascontiguousarray(new_image)).save(tmp_path / "c" / "i.png")
    Image.fromarray(np.ascontiguousarray(new_mask)).save(tmp_path / "c" / "m.png")
    copy = sd.Pair("copy", tmp_path / "c" / "i.png", tmp_path / "c" / "m.png", "val")
    found, _ = vf.prescribe(
        _report(("duplicate-across-splits", {})),
        vf.DataPlan(data, plan.train, [*plan.val, copy]),
    )
    assert found[0].drop_train == (leaked.name,)


def test_leak_prescription_drops_flipped_training_copies_too(tmp_path):
    _leaked_copy_dropped(tmp_path, lambda image, mask: (np.fliplr(image), np.fliplr(mask)))


def test_leak_prescription_drops_brightness_changed_training_copies_too(tmp_path):
    def brighter(image, mask):
        return np.clip(image.astype(float) * 1.2 + 20, 0, 255).astype(np.uint8), mask

    _leaked_copy_dropped(tmp_path, brighter)


def test_overlap_prescription_drops_the_training_tiles_that_share_a_region(tmp_path):
    from segdoctor.data.overlap import block_print

    # the real 256 px image of the sample with the most texture (dark fluorescence has few
    # blocks with 8 distinct values outside its nuclei)
    reads = [sd.read_pair(p) for p in sd.discover_pairs(sample_path()).pairs]
    reads = [r for r in reads if min(r[1].shape) >= 192]
    image, mask = max(reads, key=lambda r: len(block_print(r[0][:64, :128]).hashes))
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tiles = {}
    for top, left in [(0, 0), (0, 64), (64, 0), (64, 64), (0, 32), (128, 128)]:
        name = f"t{top}_{left}"
        Image.fromarray(image[top : top + 64, left : left + 64, 0]).save(
            tmp_path / "images" / f"{name}.png"
        )
        Image.fromarray((mask[top : top + 64, left : left + 64] > 0).astype(np.uint8)).save(
            tmp_path / "masks" / f"{name}.png"
        )
        tiles[name] = sd.Pair(
            name, tmp_path / "images" / f"{name}.png", tmp_path / "masks" / f"{name}.png"
        )
    train = [tiles[n] for n in ("t0_0", "t0_64", "t64_0", "t64_64")]
    val = [tiles["t0_32"], tiles["t128_128"]]  # t0_32 holds half of t0_0 and half of t0_64
    found, other = vf.prescribe(
        _report(("overlap-across-splits", {})), vf.DataPlan(tmp_path, train, val)
    )
    assert not other and found[0].drop_train == ("t0_0", "t0_64") and found[0].expect == "down"
    apart = vf.DataPlan(tmp_path, train, [tiles["t128_128"]])
    assert (
        vf.prescribe(_report(("overlap-across-splits", {})), apart)[1][0].status == "not-verifiable"
    )


# --------------------------------------------------------------------------------------------
# the corrected copy


def test_write_fixed_copy_rescales_masks_and_never_touches_the_users_files(tmp_path):
    data = _crops(tmp_path / "data", n=6)
    before = _hashes(data)
    report = _report(("mask-scale-255", {"values": [0, 255]}))
    out = vf.write_fixed_copy(data, tmp_path / "fixed", report)
    assert _hashes(data) == before
    for name in sorted(p.stem for p in (data / "images").iterdir()):
        mask = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        original = np.asarray(Image.open(data / "masks" / f"{name}.png"))
        assert np.array_equal(mask, (original == 255).astype(np.uint8))
        image = (out / "images" / f"{name}.png").read_bytes()
        assert image == (data / "images" / f"{name}.png").read_bytes()
    fixes = json.loads((out / "fixes.json").read_text())
    assert "255 -> 1" in fixes["masks_rescaled"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fixed")]  # no temp left
    with pytest.raises(vf.SegdoctorError, match="already exists"):
        vf.write_fixed_copy(data, out, report)
    with pytest.raises(vf.SegdoctorError, match="inside the data folder"):
        vf.write_fixed_copy(data, data / "fixed", report)


def test_write_fixed_copy_keeps_the_split_and_drops_the_leaked_training_copy(tmp_path):
    flat = _crops(tmp_path / "flat", n=5, scale=1)
    data = tmp_path / "data"
    names = sorted(p.stem for p in (flat / "images").iterdir())
    for split, chosen in (("train", names[:4]), ("val", names[4:])):
        for kind in ("images", "masks"):
            (data / split / kind).mkdir(parents=True)
            for n in chosen:
                (data / split / kind / f"{n}.png").write_bytes(
                    (flat / kind / f"{n}.png").read_bytes()
                )
    for kind in ("images", "masks"):  # a training image copied into validation: a leak
        src = data / "train" / kind / f"{names[0]}.png"
        (data / "val" / kind / "leaked.png").write_bytes(src.read_bytes())
    before = _hashes(data)
    out = vf.write_fixed_copy(data, tmp_path / "fixed", _report(("duplicate-across-splits", {})))
    assert _hashes(data) == before
    assert sorted(p.stem for p in (out / "train" / "images").iterdir()) == names[1:4]
    assert sorted(p.stem for p in (out / "val" / "images").iterdir()) == sorted(
        [names[4], "leaked"]
    )
    assert json.loads((out / "fixes.json").read_text())["dropped_copies"] == [names[0]]


def test_diagnose_write_fixed_on_the_command_line(crops255, tmp_path, capsys):
    before = _hashes(crops255)
    status = main(["diagnose", str(crops255), "--write-fixed", str(tmp_path / "out")])
    assert status == 1  # mask-scale-255 is an error finding
    assert "Corrected copy" in capsys.readouterr().out
    assert _hashes(crops255) == before
    assert {np.asarray(Image.open(p)).max() for p in (tmp_path / "out" / "masks").iterdir()} == {1}


def test_diagnose_verify_on_the_command_line_passes_the_budget_and_writes_json(
    crops255, tmp_path, monkeypatch, capsys
):
    seen = {}

    def fake_verify(report, data, **kwargs):
        seen.update(kwargs, data=data, ids=report.ids)
        return vf.VerifyResult(str(data), unverified=[vf.Unverified("x", "skipped", "why")])

    monkeypatch.setattr(vf, "verify", fake_verify)
    path = tmp_path / "r.json"
    args = ["diagnose", str(crops255), "--verify", "--max-minutes", "2.5", "--json", str(path)]
    assert main(args) == 1
    assert seen["max_minutes"] == 2.5 and "mask-scale-255" in seen["ids"]
    assert "x: skipped: why" in capsys.readouterr().out
    assert json.loads(path.read_text())["summary"]["verify"]["unverified"][0]["finding"] == "x"


# --------------------------------------------------------------------------------------------
# end to end


def test_verify_end_to_end_on_masks_stored_as_0_255(crops255, tmp_path, monkeypatch):
    monkeypatch.setattr(vf.runs, "MIN_RUN_MINUTES", 0.13)  # seconds of training are enough here
    before = _hashes(crops255)
    messages: list[str] = []
    result = vf.verify(
        crops255, max_minutes=0.4, settings=TINY, work_dir=tmp_path / "w", log=messages.append
    )
    assert _hashes(crops255) == before
    verified = {v.prescription.finding_id: v for v in result.verified}
    v = verified["mask-scale-255"]
    assert v.diagnosed.dice_mean is not None and v.fixed.dice_mean is not None
    assert v.diagnosed.epochs == v.fixed.epochs >= 1  # the same budget in epochs
    assert v.replicate is not None and v.replicate.epochs == v.diagnosed.epochs  # another seed
    assert v.comparison["seed_noise"] is not None and v.comparison["seed_noise"] >= 0
    assert v.comparison["images"] >= 1
    assert set(v.diagnosed.per_image) == set(v.fixed.per_image)  # the same validation images
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # strict JSON
    entry = d["verified"][0]
    assert entry["as_diagnosed"]["dice_mean"] is not None and entry["with_fix"]["dice_mean"]
    assert set(entry["as_diagnosed"]["per_image"]) == set(entry["with_fix"]["per_image"])
    assert entry["as_diagnosed_another_seed"]["epochs"] == entry["as_diagnosed"]["epochs"]
    text = result.to_text()
    assert "as diagnosed" in text and "with the fix" in text and v.verdict in text
    assert any("mask-scale-255: training as diagnosed" in m for m in messages)  # progress


def _logits_model(from_logits: bool) -> keras.Model:
    """A small fully convolutional binary model whose head outputs logits (no activation)."""
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(x))
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=from_logits))
    return model


def test_from_logits_is_verified_on_a_fresh_copy_of_the_users_model(crops255, monkeypatch):
    monkeypatch.setattr(vf.runs, "MAX_EPOCHS", 3)  # a few epochs are enough to run the path
    monkeypatch.setattr(vf.runs, "MIN_RUN_MINUTES", 0.13)
    model = _logits_model(from_logits=False)
    report = _report(("output-activation-missing", {"from_logits": False}))
    assert vf.prescribe(report, vf.DataPlan(crops255, [], []))[1][0].status == "not-verifiable"
    weights = [w.copy() for w in model.get_weights()]
    result = vf.verify(report, crops255, model=model, max_minutes=0.4, settings=TINY, log=print)
    v = result.verified[0]
    assert v.prescription.from_logits == (False, True)
    assert v.diagnosed.epochs == v.fixed.epochs == 3
    assert v.diagnosed.dice_mean is not None and v.fixed.dice_mean is not None
    assert result.to_dict()["verified"][0]["from_logits"] == {"diagnosed": False, "fixed": True}
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    _, other = vf.prescribe(report, vf.DataPlan(crops255, [], []), _dense_head_model())
    assert "fixed input size" in other[0].reason


def _dense_head_model() -> keras.Model:
    """A model that only takes 32x32 inputs (Flatten + Dense): it cannot score whole images."""
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Dense(32 * 32, activation="sigmoid")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Reshape((32, 32, 1))(x))
    model.compile(keras.optimizers.Adam(0.1), keras.losses.BinaryCrossentropy())
    return model


def _fixed_size_fcn(optimizer) -> keras.Model:
    """A fully convolutional binary model built for 32x32 inputs (as user scripts often do)."""
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.UpSampling2D()(keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
    if optimizer is not None:  # None: left uncompiled (a model loaded with compile=False)
        model.compile(optimizer, keras.losses.BinaryCrossentropy())
    return model


LR_EVIDENCE = {"learning_rate": 0.5, "relative_update_per_step": 0.5, "optimizer": "SGD"}


def test_a_learning_rate_fix_is_verified_on_the_users_model_and_optimizer(crops255, monkeypatch):
    monkeypatch.setattr(vf.runs, "MAX_EPOCHS", 3)  # a few epochs are enough to run the path
    monkeypatch.setattr(vf.runs, "MIN_RUN_MINUTES", 0.13)
    model = _fixed_size_fcn(keras.optimizers.SGD(0.5, momentum=0.9))
    weights = [w.copy() for w in model.get_weights()]
    report = _report(("lr-too-high", LR_EVIDENCE))
    p = vf.prescribe(report, vf.DataPlan(crops255, [], []), model)[0][0]
    assert p.model is model and p.learning_rate == (0.5, 0.01)
    assert "SGD" in p.diagnosed_as and "your model" in p.note
    result = vf.verify(report, crops255, model=model, max_minutes=0.4, settings=TINY, log=print)
    v = result.verified[0]
    assert v.diagnosed.epochs == v.fixed.epochs == 3
    assert v.diagnosed.dice_mean is not None and v.fixed.dice_mean is not None
    entry = result.to_dict()["verified"][0]
    assert entry["learning_rate"] == {"diagnosed": 0.5, "fixed": 0.01}
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))


def test_the_users_optimizer_keeps_its_settings_at_the_verified_rate():
    model = _fixed_size_fcn(keras.optimizers.SGD(0.5, momentum=0.9, nesterov=True))
    config = vf.run_config(Path("t.csv"), Path("v.csv"), {})
    optimizer = vf.user_model._optimizer(model, config, 0.01)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert optimizer.momentum == 0.9 and optimizer.nesterov is True
    assert isinstance(vf.user_model._optimizer(model, config, None), keras.optimizers.Adam)
    scaled = _fixed_size_fcn(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5)))
    inner = vf.user_model._optimizer(scaled, config, 0.01)  # the wrapped optimizer's rate
    assert isinstance(inner, keras.optimizers.SGD)
    assert float(inner.learning_rate) == pytest.approx(0.01)
    copy = vf.user_model.fresh_copy(model)  # built for 32x32, copied onto any size
    assert tuple(copy.inputs[0].shape) == (None, None, None, 1)
    assert copy.predict(np.zeros((1, 48, 64, 1), "float32"), verbose=0).shape == (1, 48, 64, 1)


def test_a_learning_rate_fix_falls_back_to_the_recipe_when_the_model_cannot_be_copied():
    plan = vf.DataPlan(Path("."), [], [])
    report = _report(("lr-too-high", LR_EVIDENCE))
    for model in (
        None,
        _dense_head_model(),
        _fixed_size_fcn(None),
    ):  # none, fixed size, no optimizer
        if model is not None and getattr(model, "optimizer", None) is None:
            assert vf.user_model.copy_problem(model) is None  # usable, but nothing to change
        p = vf.prescribe(report, plan, model)[0][0]
        assert p.model is None and p.learning_rate is None
        assert p.diagnosed == {"train.lr": "0.5"} and p.fixed == {"train.lr": "0.01"}
        assert "not on your model" in p.note


def test_comparisons_left_without_time_are_skipped_not_run(monkeypatch):
    calls = []
    monkeypatch.setattr(vf, "verify_prescription", lambda p, *a, **k: calls.append(p))
    plan = vf.DataPlan(Path("."), [], [])
    found, _ = vf.prescribe(
        _report(("mask-scale-255", {"values": [0, 255]}), ("dropout-high", {"rates": [0.6]})), plan
    )
    result = vf.VerifyResult("d")
    vf._run_all(found, plan, Path("."), result, 2.0, None, 0, 0, lambda m: None, time.monotonic())
    assert [p.finding_id for p in calls] == [found[0].finding_id]  # 2 minutes: one comparison
    assert [u.status for u in result.unverified] == ["skipped"]
    assert "leaves no time" in result.unverified[0].reason
