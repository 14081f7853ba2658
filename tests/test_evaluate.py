"""evaluate(): per-clip CSV, summary, charts, example figures/audio, baselines computed independently."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import make_manifest, train_cfg

from digit_denoise.data.manifest import load_manifest, select
from digit_denoise.data.pairs import BabblePool, make_pair
from digit_denoise.errors import UserError
from digit_denoise.evaluate import evaluate
from digit_denoise.seed.features import SeedFeatureConfig, wave_to_seed
from digit_denoise.training.loop import train

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGIT_DENOISE_CACHE", str(root / "cache"))
        m = make_manifest(root / "data")
        train(train_cfg(m, root / "run", max_steps=4))
        train(train_cfg(m, root / "buggy", preset="seed-buggy", max_steps=2, model_config={}))
    return root, m


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))


def test_evaluate_writes_report(runs, tmp_path):
    root, m = runs
    s = evaluate(root / "run", "test", n_examples=2, out=tmp_path / "rep")
    folder = tmp_path / "rep"
    rows = select(load_manifest(m), "test")
    methods = ["model", "identity", "global-mean", "per-pixel-mean"]
    assert list(s["methods"]) == methods
    assert s["n_clips"] == len(rows) == 20

    with open(folder / "per_clip.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["method", "id", "speaker", "digit", "gender", "noise", "snr", "mse"]
        per_clip = list(reader)
    assert len(per_clip) == len(methods) * len(rows)
    for meth in methods:
        ids = [r["id"] for r in per_clip if r["method"] == meth]
        assert ids == [r.id for r in rows]
        mean = np.mean([float(r["mse"]) for r in per_clip if r["method"] == meth])
        assert mean == pytest.approx(s["methods"][meth]["mse"], rel=1e-6)

    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["methods"]) == set(methods)
    assert summary["split"] == "test" and summary["n_clips"] == 20
    # what was evaluated travels with the numbers: the run's size, steps and recipe
    t = summary["training"]
    assert t["steps"] == 4 and t["parameters"] > 0 and t["preset"] == "seed" and t["init"] == "scratch"
    assert summary["manifest"] == str(m) and summary["step"] <= 4
    for key in ("per_digit", "per_speaker", "per_gender"):
        assert set(summary[key]) == set(methods)
    assert set(summary["per_digit"]["model"]) == {str(d) for d in range(10)}
    assert set(summary["per_speaker"]["identity"]) == {rows[0].speaker}
    assert summary["per_gender"]["identity"] == {"unknown": pytest.approx(summary["methods"]["identity"]["mse"])}

    # identity MSE, computed here from the waveforms on our own
    all_rows = load_manifest(m)
    pool = BabblePool(all_rows)
    feat = SeedFeatureConfig()
    mses = []
    for r in rows:
        clean, noisy, sr = make_pair(r, sr=feat.sample_rate, pool=pool)
        ci, _ = wave_to_seed(clean, sr, feat)
        ni, _ = wave_to_seed(noisy, sr, feat)
        mses.append(float(((ni - ci) ** 2).mean()))
    assert summary["methods"]["identity"]["mse"] == pytest.approx(np.mean(mses), rel=1e-4)
    assert summary["methods"]["identity"]["mse"] > 0.01
    # the per-pixel mean of the training images is never worse than one global constant
    assert summary["methods"]["per-pixel-mean"]["mse"] <= summary["methods"]["global-mean"]["mse"] + 1e-9

    for png in ("mse_per_digit.png", "mse_per_speaker.png"):
        assert (folder / png).read_bytes()[:8] == PNG
    figs = sorted((folder / "figures").glob("*.png"))
    assert len(figs) == 2 and all(p.read_bytes()[:8] == PNG for p in figs)
    den = sorted((folder / "audio").glob("*_denoised.wav"))
    assert len(den) == 2
    for p in den:
        x, sr = sf.read(str(p))
        clean_p = folder / "audio" / p.name.replace("_denoised", "_clean")
        assert sr == 8000 and len(x) == sf.info(str(clean_p)).frames and np.isfinite(x).all()
    assert "identity" in s["table"]


def test_default_folder_limit_and_buggy(runs, tmp_path):
    root, _ = runs
    s = evaluate(root / "run", "val", limit=5, n_examples=0, buggy=str(root / "buggy"))
    assert s["n_clips"] == 5
    assert list(s["methods"]) == ["model", "seed-buggy", "identity", "global-mean", "per-pixel-mean"]
    folder = Path(s["folder"])
    assert folder == root / "run" / "eval-val"
    with open(folder / "per_clip.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 5 * 5
    assert not (folder / "figures").exists()


def test_evaluate_user_errors(runs, tmp_path):
    root, _ = runs
    with pytest.raises(UserError) as e:
        evaluate(tmp_path / "nope", "test")
    assert "not found" in str(e.value) and "\n" not in str(e.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        evaluate(tmp_path / "empty", "test")
    assert "\n" not in str(e.value)

    # a checkpoint folder is a model but not a run: no config.json to find the manifest
    with pytest.raises(UserError) as e:
        evaluate(root / "run" / "checkpoints" / "best", "test", n_examples=0)
    assert "config.json" in str(e.value) and "\n" not in str(e.value)

    notest = make_manifest(tmp_path / "notest", test_speakers="0")
    with pytest.raises(UserError) as e:
        evaluate(root / "run", "test", manifest=str(notest), n_examples=0)
    assert "test" in str(e.value) and "\n" not in str(e.value)


def test_results_page_has_the_seed_recipe_rows_with_its_target(runs, tmp_path):
    """``python -m tools.results --seed-eval RUN/eval-test``: the model's MSE beside the
    baselines and the ≥ 30 % target, also from the kept copy once the run folder is gone."""
    import shutil

    from tools.results import main

    root, m = runs
    run = tmp_path / "seedrun"
    shutil.copytree(root / "run", run)
    s = evaluate(run, "test", n_examples=0)
    page, kept = tmp_path / "results.md", tmp_path / "kept"
    argv = ["-o", str(page), "--seed-eval", str(run / "eval-test")]  # a page of seed rows only
    assert main(argv + ["--keep", str(kept)]) == 0
    text = page.read_text()
    model, base = s["methods"]["model"]["mse"], s["methods"]["per-pixel-mean"]["mse"]
    assert "### seedrun-eval-test" in text
    spk = next(iter(s["per_speaker"]["model"]))
    assert f"| model | {model:.5f} | {model / base - 1:+.1%} | {s['per_speaker']['model'][spk]:.5f} |" in text
    assert f"| per-pixel-mean | {base:.5f} | +0.0% |" in text
    goal = f"Target ≤ {base * 0.7:.5f} (30% below {base:.5f}): "
    assert goal + ("✅" if model <= 0.7 * base else "❌") in text  # 4 steps: far from it
    assert "best checkpoint at step" in text and "of 4 training steps" in text
    assert "starting from" not in text and "every epoch" not in text  # from scratch, fixed noise
    shutil.rmtree(run)
    assert main(["-o", str(tmp_path / "again.md"), "--seed-eval",
                 str(kept / "seedrun-eval-test.json")]) == 0
    assert (tmp_path / "again.md").read_text().replace("### seedrun-eval-test", "") == text.replace(
        "### seedrun-eval-test", "")
    # a training run folder passed as a seed evaluation: a clear error, no page
    (tmp_path / "notaneval").mkdir()
    (tmp_path / "notaneval" / "summary.json").write_text(json.dumps({"steps": 4}))
    assert main(["-o", str(tmp_path / "bad.md"), "--seed-eval", str(tmp_path / "notaneval")]) == 2
    assert not (tmp_path / "bad.md").exists()
    with pytest.raises(SystemExit):  # neither reports nor seed evaluations
        main(["-o", str(tmp_path / "bad.md")])


def test_seed_rows_say_where_a_run_started_and_whether_its_noise_was_fresh():
    from digit_denoise.compare.runinfo import _describe
    from tools.results import _seed_extras

    t = _describe({"preset": "seed", "init": "/x/runs/seed1000", "fresh_noise": True, "augment": True})
    assert _seed_extras(t) == ", starting from `seed1000`, fresh noise and voice every epoch"
    t = _describe({"preset": "seed", "fresh_noise": True, "augment": False})
    assert _seed_extras(t) == ", fresh noise every epoch"
    assert _seed_extras(_describe({"preset": "seed"})) == ""
