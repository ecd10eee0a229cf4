"""Finding, catalog and Report: ranking, stable JSON schema, terminal and HTML views."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdoctor.doctor import CATALOG, Finding, Report, implemented_ids, make_finding
from segdoctor.doctor.report import is_symptom
from segdoctor.errors import ConfigError

ISSUE_IDS = """mask-scale-255 mask-fractional mask-instance-labels mask-rgb-palette mask-foreground-majority
pair-missing pair-shape-mismatch empty-masks class-imbalance class-absent input-not-normalized
input-constant duplicate-across-splits unreadable-file monitor-mode softmax-single-channel
output-activation-missing from-logits-mismatch activation-loss-mismatch loss-not-differentiable
output-classes-mismatch dice-smooth-large dice-batch-pooled dice-includes-background dropout-high
batchnorm-small-batch weight-decay-high bad-init init-loss-anomaly cannot-overfit lr-too-high
lr-too-low dead-relu vanishing-gradients exploding-gradients nan-loss bn-train-infer-gap
batch-size-noisy overfitting underfitting plateau loss-oscillation prediction-collapse
lr-reduced-while-improving metric-constant val-better-than-train""".split()


def test_catalog_has_every_issue_id_and_docs_section():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md").read_text()
    assert set(ISSUE_IDS) <= set(CATALOG)
    for fid in CATALOG:
        assert f"## {fid}" in docs, fid


def test_unknown_id_and_bad_severity_raise():
    with pytest.raises(ConfigError, match="Did you mean"):
        make_finding("mask-scale-256", {}, "")
    with pytest.raises(ConfigError):
        Finding("plateau", "fatal", "t", {}, "")


severities = st.sampled_from(["error", "warning", "info"])


@settings(deadline=None, max_examples=40)
@given(
    st.lists(
        st.tuples(st.sampled_from(implemented_ids()), severities, st.floats(0, 1)), max_size=12
    )
)
def test_ranking_is_severity_then_causes_before_symptoms_then_confidence_and_ids_unique(items):
    report = Report([Finding(i, s, "t", {}, "f", c) for i, s, c in items])
    ranks = [("error", "warning", "info").index(f.severity) for f in report.findings]
    assert ranks == sorted(ranks)
    assert len(report.ids) == len(set(report.ids))
    for a, b in zip(report.findings, report.findings[1:], strict=False):
        if a.severity == b.severity:
            assert is_symptom(a.id) <= is_symptom(b.id)
            if is_symptom(a.id) == is_symptom(b.id):
                assert a.confidence >= b.confidence


def test_a_cause_ranks_above_a_more_confident_symptom():
    collapse = Finding("prediction-collapse", "error", "t", {}, "f", 1.0)
    misaligned = Finding("pair-misaligned", "error", "t", {}, "f", 0.8)
    assert Report([collapse, misaligned]).ids == ["pair-misaligned", "prediction-collapse"]


def test_json_schema_round_trip_and_atomic_write(tmp_path):
    r = Report(
        [
            make_finding("plateau", {"best": 0.5}, "lower the LR", confidence=0.7),
            make_finding("mask-scale-255", {"values": [0, 255]}, "divide"),
        ],
        {"checked": ["data"]},
    )
    path = tmp_path / "sub" / "r.json"
    data = json.loads(r.to_json(path))
    assert json.loads(path.read_text()) == data
    assert set(data) == {"findings", "summary", "version"}
    assert data["findings"][0]["id"] == "mask-scale-255"
    assert set(data["findings"][0]) == {"id", "severity", "title", "evidence", "fix", "confidence"}
    assert data["summary"]["errors"] == 1 and data["summary"]["warnings"] == 1
    assert data["summary"]["top"] == "mask-scale-255"
    assert data["version"]["schema"] == 1
    assert Report.from_dict(data).ids == r.ids
    assert not list(path.parent.glob("*.tmp"))


def test_terminal_lists_findings_in_order_with_fix():
    r = Report(
        [
            make_finding("plateau", {"best": 0.5}, "lower the LR"),
            make_finding("nan-loss", {}, "add smooth"),
        ]
    )
    text = r.to_terminal()
    assert text.index("nan-loss") < text.index("plateau")
    assert "fix: add smooth" in text and "1 error(s), 1 warning(s)" in text
    assert "No findings" in Report().to_terminal()


def test_html_is_self_contained_and_escapes_user_strings():
    from segdoctor.doctor.plots import curves_png

    evil = "<script>alert(1)</script>"
    r = Report([make_finding("plateau", {"file": evil}, f"rename {evil}")])
    r.add_plot("plateau", evil, curves_png({"val_dice": [0.1, 0.2]}, ["val_dice"]))
    page = r.to_html()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "data:image/png;base64," in page and "http" not in page.replace("charset", "")
    assert r._repr_html_().startswith("<div class='segdoctor-report'>")
