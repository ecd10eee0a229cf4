"""Property-based fuzzing of the mask normalizer and of pair discovery.

* Masks: arbitrary integer (and float) arrays, with or without a kind override, ``num_classes`` and
  ``ignore_index``, end either in a :class:`DataError` / :class:`ConfigError` that says what was
  expected, or in ``int32`` label maps whose values are classes (or the ignore value).
* Discovery: random file trees (stems, extensions, mask suffixes, hidden and foreign files) give
  pairs whose stems match, and every file is accounted for: paired, listed as unpaired, listed as
  ignored, or refused with an error that names the clash. Nothing disappears silently.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segdoctor.data import decide_mask_policy, discover_pairs, inspect_masks, normalize_mask
from segdoctor.data.discover import MASK_SUFFIXES
from segdoctor.data.io import file_extension, file_stem, is_supported
from segdoctor.data.masks import KINDS
from segdoctor.errors import ConfigError, DataError

FUZZ = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

# ------------------------------------------------------------------------------------ masks

_DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.int64])


@st.composite
def mask_sets(draw) -> list[np.ndarray]:
    dtype = draw(_DTYPES)
    info = np.iinfo(dtype)
    # mostly few distinct values (real masks), sometimes anything the dtype holds
    small = st.integers(max(info.min, -3), min(info.max, 12))
    values = draw(st.sampled_from([small, small, st.integers(info.min, info.max)]))
    shape = st.tuples(st.integers(1, 9), st.integers(1, 9))
    n = draw(st.integers(1, 4))
    return [draw(hnp.arrays(dtype, draw(shape), elements=values)) for _ in range(n)]


@st.composite
def float_mask_sets(draw) -> list[np.ndarray]:
    elements = st.one_of(
        st.integers(0, 3).map(float),
        st.floats(-2, 300, allow_nan=False, width=32),
    )
    shape = st.tuples(st.integers(1, 6), st.integers(1, 6))
    n = draw(st.integers(1, 3))
    return [draw(hnp.arrays(np.float32, draw(shape), elements=elements)) for _ in range(n)]


def _check_error(err: Exception) -> None:
    text = str(err)
    assert len(text) > 20 and "Expected:" in text, text


def _normalize_all(masks, policy) -> None:
    for i, mask in enumerate(masks):
        try:
            out = normalize_mask(mask, policy, name=f"masks/m{i}.png")
        except DataError as err:
            _check_error(err)
            assert f"m{i}.png" in str(err)
            continue
        assert out.dtype == np.int32 and out.shape == mask.shape
        ok = (out >= 0) & (out < policy.num_classes)
        if policy.ignore_index is not None:
            ok |= out == policy.ignore_index
        assert ok.all(), (policy, np.unique(out))


@FUZZ
@given(
    masks=st.one_of(mask_sets(), float_mask_sets()),
    kind=st.one_of(st.none(), st.sampled_from(KINDS)),
    keep_instances=st.booleans(),
    round_fractional=st.booleans(),
    num_classes=st.one_of(st.none(), st.integers(-1, 20)),
    ignore_index=st.one_of(st.none(), st.integers(-1, 300)),
)
def test_mask_normalizer_gives_a_message_or_a_valid_label_map(
    masks, kind, keep_instances, round_fractional, num_classes, ignore_index
):
    named = [(f"masks/m{i}.png", m) for i, m in enumerate(masks)]
    try:
        report = inspect_masks(named)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # rounding fractional masks warns
            policy = decide_mask_policy(
                report,
                kind=kind,
                keep_instances=keep_instances,
                round_fractional=round_fractional,
                num_classes=num_classes,
                ignore_index=ignore_index,
            )
    except (DataError, ConfigError) as err:
        _check_error(err)
        return
    assert policy.num_classes >= 1
    assert policy.describe()
    _normalize_all(masks, policy)


@FUZZ
@given(masks=mask_sets())
def test_automatic_decision_accepts_every_non_negative_integer_mask(masks):
    """Without overrides, masks of non-negative integers are always understood, never refused."""
    masks = [np.abs(m.astype(np.int64)) % 70_000 for m in masks]
    policy = decide_mask_policy(inspect_masks(masks))
    _normalize_all(masks, policy)


# ------------------------------------------------------------------------------------ pairs

_STEMS = st.sampled_from(["a", "b", "c", "A", "img.v2", "x-1", "a_mask", "b_seg", "c_gt"])
_EXTS = st.sampled_from([".png", ".PNG", ".tif", ".tiff", ".npy", ".jpg", ".txt", ".png.bak", ""])
_FILES = st.lists(
    st.tuples(st.booleans(), st.booleans(), _STEMS, _EXTS),  # (in masks?, hidden?, stem, ext)
    max_size=12,
    unique_by=lambda t: (t[0], t[1], t[2], t[3]),
)


def _oracle(images: list[str], masks: list[str]):
    """Independent statement of the pairing rule: equal stems, or mask stem = stem + suffix."""
    stems = {}
    for name in images:
        stems.setdefault(file_stem(name), []).append(name)
    mask_stems = {}
    for name in masks:
        mask_stems.setdefault(file_stem(name), []).append(name)
    clash = [v for v in [*stems.values(), *mask_stems.values()] if len(v) > 1]
    return stems, mask_stems, clash


def _claims(image_stem: str) -> set[str]:
    return {image_stem} | {image_stem + suffix for suffix in MASK_SUFFIXES}


@FUZZ
@given(files=_FILES)
def test_discovery_pairs_by_stem_and_accounts_for_every_file(files):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "masks").mkdir()
        names: dict[str, list[str]] = {"images": [], "masks": []}
        for in_masks, hidden, stem, ext in files:
            folder = "masks" if in_masks else "images"
            name = ("." if hidden else "") + stem + ext
            if (root / folder / name).exists():
                continue
            (root / folder / name).write_bytes(b"\x00")  # discovery never reads the content
            names[folder].append(name)
        visible = {k: [n for n in v if not n.startswith(".")] for k, v in names.items()}
        readable = {k: [n for n in v if is_supported(n)] for k, v in visible.items()}
        foreign = {k: [n for n in v if not is_supported(n)] for k, v in visible.items()}
        stems, _mask_stems, clash = _oracle(readable["images"], readable["masks"])
        try:
            index = discover_pairs(root, on_unpaired="skip")
        except DataError as err:
            text = str(err)
            if not readable["images"]:
                assert "has no image files" in text
                for name in foreign["images"][:10]:
                    assert name in text
            elif clash:
                assert "same stem" in text
                assert any(sum(n in text for n in group) >= 2 for group in clash), text
            elif "Two masks match" in text:  # a.png and a_mask.png both claim images/a.png
                image = text.split("match the image '")[1].split("'")[0]
                assert image in stems
                claims = [m for m in readable["masks"] if file_stem(m) in _claims(image)]
                assert len(claims) >= 2 and sum(m in text for m in claims) >= 2, text
            else:
                assert "has a mask" in text  # nothing pairs: the names are listed (10 each)
                for names_ in (readable["images"], readable["masks"]):
                    for name in names_ if len(names_) <= 10 else ():
                        assert name in text
            return
        assert not clash
        paired_images = {p.image.name for p in index.pairs}
        paired_masks = {p.mask.name for p in index.pairs}
        for pair in index.pairs:
            stem, mstem = file_stem(pair.image), file_stem(pair.mask)
            assert pair.name == stem
            assert mstem == stem or (
                mstem not in stems and any(mstem == stem + s for s in MASK_SUFFIXES)
            )
        assert paired_images | set(index.unpaired_images) == set(readable["images"])
        assert paired_masks | set(index.unpaired_masks) == set(readable["masks"])
        assert not paired_images & set(index.unpaired_images)
        assert not paired_masks & set(index.unpaired_masks)
        ignored = {f"{k}/{n}" for k, v in foreign.items() for n in v}
        assert set(index.ignored) == ignored
        assert all(file_extension(p.image) == file_extension(p.image.name) for p in index.pairs)


@pytest.mark.timeout(60)
def test_discovery_reports_two_masks_claiming_one_image(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"\x00")
    (tmp_path / "masks" / "a.png").write_bytes(b"\x00")
    (tmp_path / "masks" / "a_mask.png").write_bytes(b"\x00")
    with pytest.raises(DataError, match=r"a\.png and a_mask\.png"):
        discover_pairs(tmp_path)


@pytest.mark.timeout(30)
def test_arbitrary_64_bit_label_ids_are_inspected_without_exhausting_memory():
    """Found by the fuzzer: find_objects allocated one slot per label value up to the largest."""
    mask = np.zeros((16, 16), np.int64)
    for k, ident in enumerate([2**40, 2**62, 123_456_789_012]):
        mask[k * 5 : k * 5 + 3, 2:6] = ident
    report = inspect_masks([mask] * 3)
    assert report.kind == "instance" and report.single_blob_fraction == 1.0
    out = normalize_mask(mask, decide_mask_policy(report))
    assert set(np.unique(out)) == {0, 1}


def test_a_declared_class_count_too_small_for_the_masks_is_refused_per_file():
    """Found by the fuzzer: fractional masks rounded to classes beyond num_classes went through."""
    report = inspect_masks([np.array([[0.0, 0.6]], np.float32)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        policy = decide_mask_policy(report, round_fractional=True, num_classes=1)
    with pytest.raises(DataError, match=r"m\.png"):
        normalize_mask(np.array([[0.0, 0.6]], np.float32), policy, name="m.png")
