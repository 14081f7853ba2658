"""The markdown results page generated from compare reports."""

from __future__ import annotations

import json

from test_compare import CONDITIONS, manifest, result  # noqa: F401  (module fixtures: one compare run)


def test_results_page_is_generated_from_the_report(result, tmp_path):  # noqa: F811
    from tools.results import main

    out = tmp_path / "docs" / "results.md"
    s, folder = result
    assert main([str(folder), "-o", str(out)]) == 0
    text = out.read_text()
    for c in CONDITIONS:
        assert f"### {c}" in text
    summary = json.loads((folder / "summary.json").read_text())
    wiener = summary["results"]["wiener"]["white@-5dB"]["si_sdr"]["mean"]
    assert f"| wiener | {wiener:.2f} |" in text
    assert "oracle-irm (oracle)" in text
    assert "split of `manifest.csv` (speakers held out of its train and val splits)" in text
    other = tmp_path / "val-report"  # another split makes no speaker-disjointness claim
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({**summary, "split": "val"}))
    assert main([str(other), "-o", str(out)]) == 0
    assert "split of `manifest.csv`, metrics at" in out.read_text()
    assert main([str(tmp_path / "nope"), "-o", str(out)]) == 2


def test_a_kept_summary_copy_still_describes_a_run_folder_that_is_gone(manifest, tmp_path):  # noqa: F811
    """compare records each model's parameters/steps/config in summary.json; a copy of it (docs/reports/NAME.json)
    gives the same page after the run folder is deleted."""
    import shutil

    from digit_denoise.checkpoint import model_meta, save_checkpoint
    from digit_denoise.compare import core as cmp
    from digit_denoise.models import build_model
    from tools.results import main

    run = tmp_path / "run"
    cfg = {"channels": 8, "dilations": [1, 2]}
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"preset": "fast", "loss": "sisdr", "model": "masknet",
                                                 "model_config": cfg, "manifest": "/d/speechy.csv"}))
    m = build_model("masknet", cfg)
    save_checkpoint(run / "checkpoints" / "best", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"},
                                                                16000, {"step": 9}))
    s = cmp.compare(manifest, tmp_path / "rep", split="test", methods=f"noisy,{run / 'checkpoints' / 'best'}",
                    noise="white", snr="0", seed=0, limit=1, workers=0, examples=0, command="test")
    name = [x["name"] for x in s["methods"]][1]
    kept = tmp_path / "docs" / "reports" / "speechy-test.json"
    kept.parent.mkdir(parents=True)
    shutil.copy(tmp_path / "rep" / "summary.json", kept)
    shutil.rmtree(run)
    out = tmp_path / "results.md"
    assert main([str(kept), "-o", str(out)]) == 0
    text = out.read_text()
    n = sum(p.numel() for p in m.state_dict().values())
    assert "## speechy-test" in text
    assert f"| {name} | fast | magnitude mask, 8 ch × 2 blocks | scratch | sisdr | speechy | {n:,} | 9 |" in text


def test_kept_copy_is_small_and_gives_the_same_page(result, tmp_path):  # noqa: F811
    """--keep DIR writes each report's summary (means and counts only) to DIR/NAME.json; the page built from the
    copy is the one built from the report."""
    from tools.results import main

    s, folder = result
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    assert main([str(folder), "--keep", str(tmp_path / "kept"), "-o", str(a)]) == 0
    copy = tmp_path / "kept" / f"{folder.name}.json"
    assert copy.stat().st_size < (folder / "summary.json").stat().st_size / 2
    assert main([str(copy), "-o", str(b)]) == 0
    assert a.read_text() == b.read_text().replace(f"## {copy.stem}", f"## {folder.name}")
    assert "ci95_low" not in copy.read_text() and "by_speaker" not in json.loads(copy.read_text())


def test_chain_option_writes_the_learning_curve_and_its_figure_beside_the_page(result, tmp_path):  # noqa: F811
    from tools.results import main

    _, folder = result
    out = tmp_path / "docs" / "page.md"
    assert main([str(folder), "-o", str(out), "--chain", "noisy,wiener"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "## Learning curve: the `noisy` chain" in text and "![SI-SDR along the chain](page-chain.png)" in text
    assert "| wiener | — | 0 | 0 |" in text  # a method without training records adds no steps
    assert (tmp_path / "docs" / "page-chain.png").read_bytes()[:4] == b"\x89PNG"
    before = out.read_bytes()
    assert main([str(folder), "-o", str(out), "--chain", "noisy,nope"]) == 2  # one-line error, page untouched
    assert out.read_bytes() == before


def test_a_personalised_report_keeps_its_profile_note_and_stays_out_of_the_blind_table(result, tmp_path):  # noqa: F811
    """A report of `compare --enroll` (personalised methods, other conditions) gets its own section only: the
    table of every blind model pools the blind reports, and the kept copy says how profiles were made."""
    from tools.results import main

    s, folder = result
    summary = json.loads((folder / "summary.json").read_text())
    a, b = tmp_path / "a", tmp_path / "b"
    for f, extra in ((a, {}), (b, {"enroll": {"clips_per_profile": 3, "from": "other clips"}})):
        f.mkdir()
        (f / "summary.json").write_text(json.dumps({**summary, **extra}))
    out = tmp_path / "r.md"
    assert main([str(a), str(b), "--keep", str(tmp_path / "kept"), "-o", str(out)]) == 0
    assert "## Ablation: every model" not in out.read_text() and "## a\n" in out.read_text()
    assert json.loads((tmp_path / "kept" / "b.json").read_text())["enroll"]["clips_per_profile"] == 3
    a2 = tmp_path / "a2"
    a2.mkdir()
    (a2 / "summary.json").write_text(json.dumps(summary))
    assert main([str(a), str(a2), str(b), "-o", str(out)]) == 0
    assert "## Ablation: every model" in out.read_text()
