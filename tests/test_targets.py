"""The targets table: values, met or missed by how much, and the margin over the best other method."""

from __future__ import annotations

import pytest

from digit_denoise.errors import UserError
from tools.targets import (
    TARGETS,
    ablation_section,
    best_peer_gaps,
    chain_rows,
    chain_section,
    load_targets,
    targets_section,
)


def _summary(methods: dict[str, dict[str, float]], corpora=("a", "b")) -> dict:
    """A compare summary with SI-SDR/ΔSI-SDR/PESQ/STOI means per method and condition (same in every corpus)."""
    conds = ["white@-8dB", "pink@-8dB", "babble@-8dB", "noise16k:unseen@-8dB"]
    res = {m: {c: {k: {"mean": v} for k, v in vals.items()} for c in conds} for m, vals in methods.items()}
    return {"methods": [{"name": m, "is_oracle": m == "oracle-irm"} for m in methods],
            "conditions": [{"name": c} for c in conds], "corpora": {c: 10 for c in corpora},
            "results": res, "results_by_corpus": {m: {c: r for c in corpora} for m, r in res.items()}}


def test_targets_table_says_met_missed_and_by_how_much():
    ours = _summary({"noisy": {"si_sdr": -8.0}, "mine": {"si_sdr": 8.5, "si_sdr_imp": 16.5, "pesq": 1.7, "stoi": 0.81},
                     "oracle-irm": {"si_sdr": 20.0}})
    peers = _summary({"gtcrn": {"si_sdr": 9.0}})
    text = "\n".join(targets_section([peers, ours], "mine"))
    assert "| SI-SDR, white −8 dB ≥ 8.6 dB (above the oracle magnitude mask) | 8.50 ❌ (-0.10) |" in text
    assert "| PESQ-WB, white −8 dB ≥ 1.6 | 1.70 ✅ |" in text
    assert "| STOI, white −8 dB ≥ 0.78 | 0.810 ✅ |" in text
    # the oracle and the noisy input are no rivals; gtcrn (another report) is, and beats us by 0.5 dB
    gaps = best_peer_gaps([peers, ours], "mine", None)
    assert [(c, round(d, 2), who) for c, d, who in gaps][0] == ("white@-8dB", -0.5, "gtcrn")
    assert "0/4 ❌ (worst white@-8dB: -0.50 dB vs gtcrn)" in text
    assert "no report holds" in "\n".join(targets_section([peers], "mine"))


def test_versus_row_says_whether_a_model_beats_the_default_it_would_replace():
    ours = _summary({"noisy": {"si_sdr": -8.0}, "new": {"si_sdr": 5.0}})
    old = _summary({"fast": {"si_sdr": 4.0}, "gtcrn": {"si_sdr": 6.0}})
    text = "\n".join(targets_section([old, ours], "new", versus="fast"))
    assert "| ahead of `fast` in every condition (SI-SDR) | 4/4 ✅ | 4/4 ✅ | 4/4 ✅ |" in text
    assert "| ahead of the best other method in every condition (SI-SDR) | 0/4 ❌" in text  # gtcrn is ahead
    assert [round(d, 2) for _, d, _ in best_peer_gaps([old, ours], "new", "a", only="fast")] == [1.0] * 4
    worse = _summary({"fast": {"si_sdr": 5.5}})
    assert "0/4 ❌ (worst white@-8dB: -0.50 dB vs fast)" in "\n".join(targets_section([worse, ours], "new", "fast"))
    # no such method in the reports, or the model itself: no row
    for v in ("nope", "new"):
        assert "ahead of `" not in "\n".join(targets_section([old, ours], "new", versus=v))


def test_ablation_table_has_every_model_once_its_training_and_the_targets_row():
    first = _summary({"noisy": {"si_sdr": -8.0}, "gtcrn": {"si_sdr": 5.0}, "oracle-irm": {"si_sdr": 9.0}})
    first["rtf"] = {"gtcrn": 0.03}
    second = _summary({"noisy": {"si_sdr": -7.0}, "mine": {"si_sdr": 6.0, "si_sdr_imp": 14.0, "pesq": 1.5, "stoi": 0.7}})
    second["methods"][1]["training"] = {"init": "gtcrn", "steps": 2000, "train_s": 1500.0}
    # a condition where the mean of every condition differs from white −8 dB
    second["results"]["mine"]["pink@-8dB"]["si_sdr"]["mean"] = 2.0
    text = "\n".join(ablation_section([first, second]))
    rows = [r for r in text.splitlines() if r.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| noisy", "| gtcrn", "| mine", "| oracle-irm (oracle)", "| target"]
    assert "| noisy | — | — | — | — | -8.00 |" in text  # from the first report that holds it, not the second
    assert "| gtcrn | — | — | — | 0.0300 | 5.00 |" in text
    # mean of the 4 conditions (6, 2, 6, 6) = 5.00, then white, pink, babble, Δ unseen, PESQ, STOI
    assert "| mine | gtcrn | 2000 | 25 | — | 5.00 | 6.00 | 2.00 | 6.00 | +14.00 | 1.50 | 0.700 |" in text
    assert rows[-1] == "| target | | | | ≤ 0.02 | — | 8.60 | 6.00 | — | +8.00 | 1.60 | 0.780 |"  # tools/targets.toml
    assert all(r.count("|") == rows[0].count("|") for r in rows)  # every row has every column


def test_chain_adds_steps_and_minutes_across_stages():
    a = _summary({"noisy": {"si_sdr": -8.0}, "base": {"si_sdr": 1.0}})
    b = _summary({"noisy": {"si_sdr": -8.0}, "ft1": {"si_sdr": 2.0}, "ft2": {"si_sdr": 3.0}})
    b["methods"][1]["training"] = {"init": "base", "steps": 1000, "train_s": 600.0}
    b["methods"][2]["training"] = {"init": "ft1", "steps": 500, "train_s": 300.0}
    a["methods"][1]["training"] = {"init": "scratch", "steps": 9999, "train_s": 9e5}  # before the chain: not counted
    text = "\n".join(chain_section(chain_rows([a, b], ["base", "ft1", "ft2"]), "page-chain.png"))
    assert "![SI-SDR along the chain](page-chain.png)" in text
    assert "| base | — | 0 | 0 | 1.00 | 1.00 | 1.00 | 1.00 | 1.00 |" in text
    assert "| ft1 | 1000 | 1000 | 10 | 2.00 |" in text
    assert "| ft2 | 500 | 1500 | 15 | 3.00 |" in text
    rows = chain_rows([a, b], ["base", "ft2"])
    assert [r["total_steps"] for r in rows] == [0, 500]
    with pytest.raises(UserError, match="no report holds the method 'nope'"):
        chain_rows([a, b], ["nope"])


def test_targets_live_in_a_data_file(tmp_path):
    assert len(TARGETS) == 6 and all(isinstance(t[3], float) for t in TARGETS)
    f = tmp_path / "t.toml"
    f.write_text('[[target]]\nwhat = "x"\ncondition = "white@-8dB"\nmetric = "si_sdr"\nat_least = 1\n')
    assert load_targets(f) == (("x", "white@-8dB", "si_sdr", 1.0),)
