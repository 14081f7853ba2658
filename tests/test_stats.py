"""Comparison statistics: common support, confidence intervals, grouping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digit_denoise.compare import stats as M


def _rows():
    # clip c3 fails PESQ for method B; clip c5 only exists for A
    pesq = {"A": [2.0, 3.0, 2.5, 4.0, 1.0], "B": [2.5, 3.5, float("nan"), 4.5]}
    rows = []
    for m, vals in pesq.items():
        for i, v in enumerate(vals):
            rows.append({"method": m, "key": f"c{i + 1}", "pesq": v, "stoi": 0.5 + 0.1 * i})
    return rows


def test_valid_ids_and_mask():
    rows = _rows()
    assert M.valid_ids_for_all(rows, ["A", "B"], "pesq") == {"c1", "c2", "c4"}
    assert M.valid_ids_for_all(rows, ["A"], "pesq") == {"c1", "c2", "c3", "c4", "c5"}
    assert M.valid_ids_for_all(rows, None, "stoi") == {"c1", "c2", "c3", "c4"}
    mask = M.valid_mask_for_all(rows, ["A", "B"], "pesq")
    assert mask.tolist() == [True, True, False, True, False, True, True, False, True]


def test_summarize_common_support():
    rows = _rows()
    out = {(r["method"], r["metric"]): r for r in M.summarize(rows, metrics=("pesq", "stoi"))}
    a, b = out["A", "pesq"], out["B", "pesq"]
    assert a["n"] == b["n"] == 3  # c3 (B failed) and c5 (B missing) excluded from both
    assert a["mean"] == pytest.approx(np.mean([2.0, 3.0, 4.0]))
    assert b["mean"] == pytest.approx(np.mean([2.5, 3.5, 4.5]))
    assert a["median"] == pytest.approx(3.0)
    assert (a["n_failed"], b["n_failed"]) == (0, 1)
    assert (a["n_rows"], b["n_rows"]) == (5, 4)
    half = 1.96 * np.std([2.0, 3.0, 4.0], ddof=1) / math.sqrt(3)
    assert a["ci95_half"] == pytest.approx(half)
    for r in out.values():
        assert r["ci95_low"] < r["mean"] < r["ci95_high"]
    assert out["A", "stoi"]["n"] == 4 and out["A", "stoi"]["n_failed"] == 0
    # without common support each method keeps its own valid clips
    own = {(r["method"], r["metric"]): r
           for r in M.summarize(rows, metrics=("pesq",), common_support=False)}
    assert own["A", "pesq"]["n"] == 5 and own["B", "pesq"]["n"] == 3
    # an extra grouping field (e.g. SNR) keeps the support per condition
    rows2 = [dict(r, snr=0) for r in rows] + [dict(r, snr=5, pesq=1.5) for r in rows]
    by = {(r["method"], r["snr"]): r for r in M.summarize(rows2, ("method", "snr"), ("pesq",))}
    assert by["A", 0]["n"] == 3 and by["A", 5]["n"] == 4 and by["B", 5]["n_failed"] == 0
    # empty / single-value groups give nan statistics, not errors
    single = M.summarize([{"method": "A", "key": "c1", "pesq": 2.0}], metrics=("pesq",))[0]
    assert single["n"] == 1 and single["mean"] == 2.0 and math.isnan(single["ci95_half"])
