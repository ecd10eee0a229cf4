"""The catalog's fix texts: every entry has one, every template renders, missing values raise."""

from __future__ import annotations

import string

import pytest

from segdoctor.doctor.catalog import CATALOG, CatalogEntry, make_finding, placeholders
from segdoctor.errors import ConfigError

FLOAT_SPECS = tuple("eEfFgG%")


def _stub(template: str) -> dict[str, object]:
    """A value for every placeholder that suits its format spec (a float for ``:.2f``, ...)."""
    values: dict[str, object] = {}
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if spec and spec[-1] in FLOAT_SPECS:
            values[name] = 0.25
        elif spec and spec[-1] == "d":
            values[name] = 3
        else:
            values[name] = f"<{name}>"
    return values


def _templates():
    for entry in CATALOG.values():
        for variant, (fix, title) in entry.templates().items():
            yield pytest.param(entry, variant, fix, title, id=f"{entry.id}:{variant or 'default'}")


def test_every_implemented_entry_and_variant_has_a_fix_text():
    for entry in CATALOG.values():
        if not entry.implemented:
            continue
        for variant, (fix, title) in entry.templates().items():
            assert len(fix) > 40, (entry.id, variant)
            assert title, (entry.id, variant)


@pytest.mark.parametrize(("entry", "variant", "fix", "title"), list(_templates()))
def test_every_template_renders_from_plain_named_values(entry, variant, fix, title):
    # A placeholder must be a plain name the check can pass: an unescaped brace of quoted code
    # ("{'images': x}") parses as a field named "'images'" and fails here.
    for template in (fix, title):
        for name in placeholders(template):
            assert name.isidentifier(), (entry.id, variant, name)
    values = _stub(fix) | _stub(title)
    finding = make_finding(entry.id, dict(values), variant=variant)
    assert finding.title == entry.render_title(values, variant)
    for name, value in values.items():  # every text value shows up where its placeholder was
        if isinstance(value, str):
            assert value in finding.fix + finding.title, (entry.id, variant, name)


def test_a_missing_value_raises_a_clear_error_at_build_time():
    with pytest.raises(ConfigError, match="'monitor'") as err:
        make_finding("plateau", {"best": 0.5})  # the template quotes the monitored key
    assert "plateau" in str(err.value)
    with pytest.raises(ConfigError, match="'dtype_policy'"):
        make_finding("nan-loss", {}, variant="mixed-float16")


def test_unknown_variant_raises_with_a_suggestion():
    with pytest.raises(ConfigError, match="Did you mean"):
        make_finding("mask-fractional", {}, variant="batches")
    with pytest.raises(ConfigError, match="no variant"):
        make_finding("empty-masks", {}, variant="batch")


def test_explicit_fix_and_title_win_over_the_templates():
    finding = make_finding("plateau", {"best": 0.5}, "lower the LR", title="T", severity="info")
    assert (finding.fix, finding.title, finding.severity) == ("lower the LR", "T", "info")


def test_values_fill_the_template_and_stay_out_of_the_evidence():
    finding = make_finding(
        "mask-scale-255", {"values": [0, 128]}, variant="folder", top=128, severity="warning"
    )
    assert finding.title == "Masks are stored as 0/128, not 0/1"
    assert finding.fix.startswith("Convert to 0/1 when loading: mask = (mask == 128).astype(")
    assert "top" not in finding.evidence


def test_quoted_code_keeps_its_braces():
    fix = make_finding("pair-misaligned", {}, variant="batch").fix
    assert "out = aug({'images': x, 'segmentation_masks': y}); x, y = out['images']" in fix
    overfit = make_finding(
        "cannot-overfit",
        {"steps": 150, "samples": 4, "fitted_foreground_dice": 0.123},
        variant="pairing",
        optimizer_lr=0.003,
    ).fix
    assert overfit.startswith(
        "A copy of the model trained 150 steps with Adam(0.003) on 4 samples reaches Dice 0.12"
    )
    assert overfit.endswith("out = aug({'images': x, 'segmentation_masks': y})")


def test_composed_variants_join_their_advice():
    fix = make_finding(
        "bn-train-infer-gap",
        {"batch_size": 2, "momentum": 0.99},
        variant="small-batch-slow-momentum",
        momentum_steps=100,
    ).fix
    assert "(segdoctor: norm='group'); momentum=0.99 averages over ~100 steps" in fix
    assert fix.endswith("(only the moving statistics change).")


def test_entry_defaults_keep_the_positional_constructor():
    entry = CatalogEntry("x", "data", "warning", "X")
    assert (entry.fix, dict(entry.variants), entry.implemented) == ("", {}, True)
    assert entry.anchor == "docs/troubleshooting.md#x"
