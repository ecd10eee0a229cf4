"""--verify prescriptions that change the data: masks snapped to their labels, re-split, re-pair.

Real data: crops of the bundled nuclei sample (DSB 2018), made faulty the way user scripts do.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from segdoctor import data as sd
from segdoctor.cli import verify as vf
from segdoctor.cli.verify import data_fixes, runs
from segdoctor.doctor import Report, make_finding
from segdoctor.sample_data import sample_path

TINY = {
    "data.patch_size": "32",
    "model.base_filters": "8",
    "model.depth": "2",
    "data.batch_size": "4",
}


def _nuclei(
    n: int = 12, size: int = 48, most: bool = True
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``n`` size x size crops (gray image, 0/1 mask): with the most foreground, else centred."""
    out = []
    for pair in sd.discover_pairs(sample_path()).pairs[:n]:
        image, mask = sd.read_pair(pair)
        fg = (mask > 0).astype(np.int64)  # (H, W)
        s = np.pad(fg.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        win = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
        y, x = np.unravel_index(np.argmax(win), win.shape)
        if not most:
            y, x = (fg.shape[0] - size) // 2, (fg.shape[1] - size) // 2
        box = (slice(y, y + size), slice(x, x + size))
        out.append((pair.name, image[box][..., 0], fg[box].astype(np.uint8)))
    return out


def _write(root: Path, crops, mask_ext: str = ".png") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, image, mask in crops:
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        if mask_ext == ".tif":
            tifffile.imwrite(root / "masks" / f"{name}.tif", mask)
        else:
            Image.fromarray(mask).save(root / "masks" / f"{name}{mask_ext}")
    return root


def _report(*ids_and_evidence) -> Report:
    return Report([make_finding(i, ev, "fix") for i, ev in ids_and_evidence])


# --------------------------------------------------------------------------------------------
# masks with in-between values


def test_snap_to_labels_is_nearest_label_with_ties_up():
    snap = vf.SnapToLabels((0, 1))
    assert snap(np.array([[0.0, 0.49, 0.5, 0.51, 1.0, 2.0]])).tolist() == [[0, 0, 1, 1, 1, 1]]
    assert vf.SnapToLabels((255, 0))(np.array([0, 127, 128, 255])).tolist() == [0, 0, 1, 1]


def test_bilinear_masks_are_snapped_and_the_fault_is_read_as_nonzero(tmp_path):
    crops = _nuclei(8)
    soft = []
    for name, image, mask in crops:  # upsampled as skimage.resize does by default: bilinear
        big = np.asarray(Image.fromarray(image).resize((72, 72), Image.BILINEAR))
        m = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((72, 72), Image.BILINEAR))
        soft.append((name, big, m.astype(np.float32)))
    data = _write(tmp_path / "d", soft, ".tif")
    plan = vf.plan_data(data)
    assert vf.label_set(make_finding("mask-fractional", {}, "f"), [*plan.train, *plan.val]) == (
        0.0,
        1.0,
    )
    found, other = vf.prescribe(
        _report(("mask-fractional", {}), ("mask-invalid-values", {"kinds": "fractional"})), plan
    )
    assert [p.finding_id for p in found] == ["mask-fractional"]
    assert other[0].status == "skipped"  # mask-invalid-values: the same runs
    p = found[0]
    assert p.data.truth == tuple(plan.val) and p.diagnosed == {}
    (diag_train, _), (fixed_train, _), truth = runs._sides(p, plan, tmp_path / "w")
    areas = np.zeros(2)
    for d, f in zip(diag_train, fixed_train, strict=True):
        stored = sd.read_mask(plan.train[[q.name for q in plan.train].index(d.name)].mask)
        assert np.array_equal(sd.read_mask(d.mask), (stored > 0).astype(np.uint8))
        assert np.array_equal(sd.read_mask(f.mask), (stored >= 0.5).astype(np.uint8))
        areas += [sd.read_mask(d.mask).sum(), sd.read_mask(f.mask).sum()]
    assert areas[0] > areas[1]  # mask > 0 dilates every object by its blurred rim
    assert [t.name for t in truth] == [q.name for q in plan.val]


def test_jpeg_masks_are_read_as_classes_as_diagnosed_and_snapped_with_the_fix(tmp_path):
    data = _write(tmp_path / "d", _nuclei(8), ".jpg")
    values = {int(v) for q in (data / "masks").iterdir() for v in np.unique(sd.read_mask(q))}
    plan = vf.plan_data(data)
    evidence = {"labels_without_ringing": [0, 1], "values_read_as_classes": max(values) + 1}
    found, _ = vf.prescribe(_report(("mask-lossy-format", evidence)), plan)
    p = found[0]
    if max(values) > 1:  # ringing above the labels: the pipeline reads them as classes
        assert p.diagnosed == {"data.mask_policy": "multiclass"}
        assert p.foreground(np.array([0, 1, 2])).tolist() == [0, 1, 1]
    _, (fixed_train, _), _ = runs._sides(p, plan, tmp_path / "w")
    assert {int(v) for q in fixed_train for v in np.unique(sd.read_mask(q.mask))} <= {0, 1}
    out = vf.write_fixed_copy(data, tmp_path / "fixed", _report(("mask-lossy-format", evidence)))
    written = {int(v) for q in (out / "masks").iterdir() for v in np.unique(sd.read_mask(q))}
    assert written <= {0, 1} and json.loads((out / "fixes.json").read_text())["masks_snapped"]


def test_a_label_set_that_is_not_binary_is_not_verified(tmp_path):
    crops = [(n, i, (m * 2 + (np.arange(m.size).reshape(m.shape) % 2)).astype(np.uint8))
             for n, i, m in _nuclei(4)]  # fmt: skip
    plan = vf.plan_data(_write(tmp_path / "d", crops))
    _, other = vf.prescribe(_report(("mask-fractional", {})), plan)
    assert other[0].status == "not-verifiable" and "only binary" in other[0].reason


# --------------------------------------------------------------------------------------------
# a split whose sides differ


def _split(root: Path, train, val) -> Path:
    for split, group in (("train", train), ("val", val)):
        _write(root / split, group)
    return root


def test_class_absent_from_validation_is_re_split_and_compared_on_images_both_hold_out(
    tmp_path,
):
    crops = _nuclei(16)
    with_fg = [c for c in crops if c[2].any()]
    data = _split(tmp_path / "d", with_fg[:8], [(n, i, 0 * m) for n, i, m in crops[8:16]])
    plan = vf.plan_data(data)
    assert plan.has_splits
    found, _ = vf.prescribe(_report(("split-class-absent", {"classes": [1]})), plan)
    p = found[0]
    (train, val), (new_train, new_val) = p.data.diagnosed, p.data.fixed
    assert not {q.name for q in new_train} & {q.name for q in new_val}
    assert {q.name for q in [*train, *val]} == {q.name for q in [*new_train, *new_val]}
    assert sum(sd.read_mask(q.mask).any() for q in new_val) == 4  # half of the class: the share
    kept = set(p.data.score_names)
    assert kept == {q.name for q in val} & {q.name for q in new_val} and len(kept) == 4
    assert kept.isdisjoint({q.name for q in [*train, *new_train]})  # neither run trains on them


def test_a_split_without_differences_is_not_re_split(tmp_path):
    crops = _nuclei(8)
    plan = vf.plan_data(_split(tmp_path / "d", crops[::2], crops[1::2]))
    _, other = vf.prescribe(_report(("split-empty-masks", {})), plan)
    assert other[0].status == "not-verifiable" and "moves no pair" in other[0].reason


def test_empty_validation_crops_are_not_re_split_or_oversampled(tmp_path):
    crops = _nuclei(12)
    with_fg = [c for c in crops if c[2].any()]
    plan = vf.plan_data(
        _split(tmp_path / "d", with_fg[:6], [(n, i, 0 * m) for n, i, m in crops[6:]])
    )
    size = ("split-image-size", {"cropped_split": "val"})
    rates = {"empty_rate": {"train": 0.0, "val": 1.0}}
    empty = ("empty-masks", {"empty": 6, "of": 12})
    found, other = vf.prescribe(_report(size, ("split-empty-masks", rates), empty), plan)
    assert found == []
    status = {u.finding_id: (u.status, u.reason) for u in other}
    assert status["split-image-size"][0] == "not-verifiable"
    assert "changes what is measured" in status["split-image-size"][1]
    assert status["split-empty-masks"][0] == status["empty-masks"][0] == "skipped"
    # without the crops (or with more empty training masks) the re-split is measured as before
    found, _ = vf.prescribe(_report(("split-empty-masks", rates), empty), plan)
    assert {p.finding_id for p in found} == {"split-empty-masks", "empty-masks"}
    flipped = {"empty_rate": {"train": 1.0, "val": 0.0}}
    found, _ = vf.prescribe(_report(size, ("split-empty-masks", flipped)), plan)
    assert [p.finding_id for p in found] == ["split-empty-masks"]


def test_only_one_re_split_is_measured_per_report(tmp_path):
    crops = _nuclei(12)
    plan = vf.plan_data(_split(tmp_path / "d", crops[:6], crops[6:]))
    report = _report(("split-intensity-shift", {}), ("split-object-size", {}))
    found, other = vf.prescribe(report, plan)
    assert len(found) == 1 and len(other) == 1  # the report ranks them; one is measured
    assert {found[0].finding_id, other[0].finding_id} == {
        "split-intensity-shift",
        "split-object-size",
    }
    assert other[0].status == "skipped" and "re-split" in other[0].reason


# --------------------------------------------------------------------------------------------
# mispaired by sort order


def test_pairs_mixed_up_by_the_listing_are_re_paired_by_content(tmp_path):
    crops = [c for c in _nuclei(12, 96, most=False) if 0.03 < c[2].mean() < 0.5]
    data = _write(tmp_path / "d", crops)
    plan = vf.plan_data(data)
    pairs = [*plan.train, *plan.val]
    masks = [q.mask for q in pairs]
    shifted = {q.name: masks[(k + 1) % len(masks)] for k, q in enumerate(pairs)}  # off by one
    mixed = vf.DataPlan(
        data,
        [replace(q, mask=shifted[q.name]) for q in plan.train],
        [replace(q, mask=shifted[q.name]) for q in plan.val],
    )
    found, _ = vf.prescribe(_report(("pair-misaligned", {})), mixed)
    p = found[0]
    right = {q.name: q.mask for q in pairs}
    assert all(q.mask == right[q.name] for q in [*p.data.fixed[0], *p.data.fixed[1]])
    assert [q.name for q in p.data.truth] == [q.name for q in plan.val]
    _, other = vf.prescribe(_report(("pair-misaligned", {})), plan)  # already right
    assert other[0].status == "not-verifiable" and "no aligned pairing" in other[0].reason


def test_the_re_paired_comparison_scores_both_runs_on_the_same_images(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "MIN_RUN_MINUTES", 0.13)
    crops = [c for c in _nuclei(14, 64, most=False) if 0.03 < c[2].mean() < 0.5]
    plan = vf.plan_data(_write(tmp_path / "d", crops))
    names = [q.name for q in plan.train]
    rolled = {n: plan.train[(k + 3) % len(names)].mask for k, n in enumerate(names)}
    mixed = vf.DataPlan(plan.root, [replace(q, mask=rolled[q.name]) for q in plan.train], plan.val)
    found, _ = vf.prescribe(_report(("pair-misaligned", {})), mixed)
    v = vf.verify_prescription(
        found[0], mixed, tmp_path / "w", minutes=0.5, settings=TINY, log=lambda m: None
    )
    assert v.diagnosed.dice_mean is not None and v.fixed.dice_mean is not None
    assert set(v.diagnosed.per_image) == set(v.fixed.per_image) == {q.name for q in plan.val}
    assert v.comparison["images"] >= 1
    assert v.to_dict()["data"]["what"] == "re-paired by content"


@pytest.mark.parametrize("n", [0, 3])
def test_resplit_keeps_validation_its_own_pairs_first(n):
    train = [sd.Pair(f"t{i}", Path("i"), Path("m")) for i in range(6)]
    val = [sd.Pair(f"v{i}", Path("i"), Path("m")) for i in range(n + 3)]
    new_train, new_val = data_fixes.resplit(train, val, lambda q: (), 0)
    assert {q.name for q in new_val} == {q.name for q in val}  # one stratum: nothing moves
    assert len(new_train) == 6
