"""What a model is and how it was trained, for the results page's ablation columns."""

from __future__ import annotations

import json


def test_results_describe_runs_and_model_files(tmp_path):
    """The ablation columns come from a run's config.json or from the JSON beside a model file."""
    from digit_denoise.checkpoint import model_meta, save_checkpoint
    from digit_denoise.compare.runinfo import run_info
    from digit_denoise.models import build_model

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"parameters": 123, "steps": 40, "elapsed_s": 120.0}))
    (run / "config.json").write_text(json.dumps({
        "preset": "fast", "loss": "sisdr", "model": "masknet", "manifest": "/d/fsdd-white.csv,/d/synth.csv",
        "model_config": {"channels": 64, "dilations": [1, 2, 4], "mask": "complex"}}))
    info = run_info(str(run / "checkpoints" / "best"))
    assert info == {"parameters": 123, "steps": 40, "train_s": 120.0, "preset": "fast", "loss": "sisdr", "init": "scratch",
                    "shape": "complex mask, 64 ch × 3 blocks", "data": "fsdd-white, synth"}

    cfg = {"channels": 8, "dilations": [1, 2]}
    m = build_model("masknet", cfg)
    meta = model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000,
                      {"training": {"preset": "fast", "loss": "sisdr", "model": "masknet", "model_config": cfg},
                       "trained_on": "FSDD, 4 speakers", "step": 7})
    save_checkpoint(tmp_path / "ck", m, meta)
    info = run_info(str(tmp_path / "ck"))
    assert info["parameters"] == sum(p.numel() for p in m.state_dict().values())
    assert (info["steps"], info["shape"], info["data"]) == (7, "magnitude mask, 8 ch × 2 blocks", "FSDD, 4 speakers")
    assert run_info(str(tmp_path / "nothing-here")) == {}


def test_results_page_describes_each_family_with_its_defaults():
    from digit_denoise.compare.runinfo import _describe

    d = _describe({"model": "tasnet", "model_config": {}, "preset": "fast", "loss": "sisdr", "manifest": "/d/x.csv"})
    assert d["shape"] == "time domain, 256 filters × 14 blocks" and d["data"] == "x"
    assert _describe({"model": "masknet", "model_config": {"mask": "complex"}})["shape"] == "complex mask, 128 ch × 8 blocks"
    assert _describe({"model": "seed-attn"})["shape"] == "4-level residual U-Net, channels [32, 64, 128, 256], attention gates"
    assert _describe({"model": "no-such-family"})["shape"] == "no-such-family"  # a newer file: its name


def test_a_run_still_training_is_described_from_its_best_checkpoint_and_history(tmp_path):
    """No summary.json yet: the step of checkpoints/best, its config.json and the wall time at that step."""
    from digit_denoise.checkpoint import model_meta, save_checkpoint
    from digit_denoise.compare.runinfo import run_info
    from digit_denoise.models import build_model

    run = tmp_path / "run"
    cfg = {"channels": 8, "dilations": [1, 2]}
    m = build_model("masknet", cfg)
    save_checkpoint(run / "checkpoints" / "best", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"},
                                                                16000, {"step": 1000}))
    (run / "config.json").write_text(json.dumps({"preset": "speech", "loss": "spec+sisdr", "model": "masknet",
                                                 "model_config": cfg, "manifest": "/d/speech16k.csv",
                                                 "init": "gtcrn"}))
    (run / "history.jsonl").write_text("".join(json.dumps({"step": s, "elapsed_s": s * 1.5}) + "\n"
                                               for s in (500, 1000, 1500)))
    info = run_info(str(run))
    assert (info["steps"], info["train_s"], info["preset"], info["data"]) == (1000, 1500.0, "speech", "speech16k")
    assert info["init"] == "gtcrn"  # fine-tuned from the packaged model
    assert info["parameters"] == sum(p.numel() for p in m.state_dict().values())
