"""tools/arms.py: a run's kept history and the page's table and learning curves of runs at equal wall time."""

from __future__ import annotations

from pathlib import Path

from helpers import make_manifest, train_cfg
from test_targets import _summary

from digit_denoise.training.loop import train
from tools.arms import arms_section, keep_history, load_history
from tools.results import main


def test_kept_histories_give_the_arms_table_and_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    manifest = make_manifest(tmp_path / "data")
    for name, ch in (("arm-a", 8), ("arm-b", 4)):
        train(train_cfg(manifest, tmp_path / name, preset="fast", model_config={"channels": ch, "dilations": [1, 2]},
                        batch_size=8, max_steps=4, val_every=2, segment=0.5, noise="white", snr="0:5"))
    kept = [keep_history(tmp_path / n, tmp_path / "kept") for n in ("arm-a", "arm-b")]
    h = load_history(kept[0])
    assert h["name"] == "arm-a" and [r["step"] for r in h["records"]] == [2, 4] and h["parameters"] > 0
    text = "\n".join(arms_section([load_history(p) for p in kept], []))
    rows = [r for r in text.splitlines() if r.startswith("| arm-")]
    assert len(rows) == 2 and all(r.count("|") == text.splitlines()[4].count("|") for r in rows)
    best = max(-r["val_loss"] for r in h["records"])
    assert f"| {best:.2f} |" in rows[0]
    page = tmp_path / "page.md"
    peers = Path(__file__).resolve().parents[1] / "docs" / "reports" / "test17-peers.json"
    assert main([str(peers), "--arms", *map(str, kept), "-o", str(page)]) == 0
    assert "## Ablation at equal wall time" in page.read_text() and (tmp_path / "page-arms.png").stat().st_size > 5000
    # a run held by a personalised report: its test mean is marked as such (other conditions, with profiles)
    s = {**_summary({"arm-a": {"si_sdr": 3.0}}), "enroll": {"clips_per_profile": 3}}
    text = "\n".join(arms_section([h], [s]))
    assert "| 3.00 ‡ |" in text and "‡ from a personalised report" in text
    assert "‡" not in "\n".join(arms_section([h], [_summary({"arm-a": {"si_sdr": 3.0}})]))
    # a guarded run's −(validation loss) holds the guard's penalties: no validation SI-SDR for it
    text = "\n".join(arms_section([{**h, "no_regress": 3.0}], []))
    assert f"| {best:.2f} |" not in text and "| — | — |" in text
