"""Recipe files, presets and flags: one schema (TrainConfig), one parser per field, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from digit_denoise.errors import UserError
from digit_denoise.pretrained import REGISTRY
from digit_denoise.training.config import (
    PRESETS,
    TrainConfig,
    learning_rate,
    load_config,
    read_recipe,
    recipe_differences,
    resolve_config,
    saved_differences,
)

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_recipe_file_is_typed_and_flags_override_it(tmp_path):
    r = write(tmp_path / "r.toml", 'preset = "fast"\nmanifest = ["a.csv", "b.csv"]\nsnr = [-12, 8]\n'
              'snr_focus = [-12, -4, 0.7]\nnoise = ["white", "babble"]\nbabble_talkers = [2, 6]\nlr = 5e-4\n'
              'model_config = { channels = 64 }\nout = "runs/x"\n')
    cfg = load_config(r)
    assert cfg.preset == "fast" and cfg.model == "masknet" and cfg.recipe == str(r)
    assert cfg.manifest == ("a.csv", "b.csv") and cfg.snr == (-12.0, 8.0) and cfg.snr_focus == (-12.0, -4.0, 0.7)
    assert cfg.noise == ("white", "babble") and cfg.babble_talkers == (2, 6) and cfg.lr == 5e-4
    assert cfg.model_config["channels"] == 64 and cfg.model_config["dilations"] == PRESETS["fast"]["model_config"][
        "dilations"]  # the preset's other model settings stay
    flagged = load_config(r, lr="1e-3", snr="-5:5", noise="pink")  # flags: the command line's text
    assert flagged.lr == 1e-3 and flagged.snr == (-5.0, 5.0) and flagged.noise == ("pink",)
    assert flagged.manifest == ("a.csv", "b.csv")  # what no flag gave stays the file's


def test_extends_merges_and_a_nearer_file_wins(tmp_path):
    write(tmp_path / "base.toml", 'preset = "fast"\nlr = 1e-3\nsteps = 100\nmodel_config = { channels = 32 }\n')
    write(tmp_path / "arm.toml", 'extends = "base.toml"\nsteps = 200\nmodel_config = { mask = "complex" }\n')
    cfg = load_config(tmp_path / "arm.toml")
    assert cfg.lr == 1e-3 and cfg.steps == 200
    assert cfg.model_config["channels"] == 32 and cfg.model_config["mask"] == "complex"
    write(tmp_path / "loop.toml", 'extends = "loop.toml"\n')
    with pytest.raises(UserError, match="loops back"):
        read_recipe(tmp_path / "loop.toml")


@pytest.mark.parametrize("text, words", [
    ('snr = "abc"', "snr = abc: expected LO:HI"),
    ('snr = [10, -10]', "LO ≤ HI"),
    ('lr = -1', "lr = -1: must be > 0"),
    ('ema = 1.5', "ema = 1.5"),
    ('babble_talkers = [0, 3]', "babble_talkers"),
    ('snr_focus = "-12:-4@2"', "share after @"),
    ('batch_size = 2.5', "whole number"),
    ('schedule = "linear"', "choose one of constant, cosine"),
    ('noise = []', "at least one noise kind"),
    ('learning_rate = 1', "unknown key(s) learning_rate"),
    ('lr = ', "not valid TOML"),
])
def test_a_bad_value_names_the_key_and_the_file(tmp_path, text, words):
    r = write(tmp_path / "bad.toml", text + "\n")
    with pytest.raises(UserError) as e:
        load_config(r)
    assert str(r) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


def test_a_bad_flag_names_the_flag():
    with pytest.raises(UserError, match=r"^--snr-focus -12:-4@x: expected LO:HI@SHARE"):
        resolve_config("fast", snr_focus="-12:-4@x")
    with pytest.raises(UserError, match=r"^--speed 0.1:3: expected LO:HI with 0.5"):
        resolve_config("fast", speed="0.1:3")


def test_presets_are_the_packaged_recipe_files():
    files = sorted(p.stem for p in (REPO / "src/digit_denoise/training/presets").glob("*.toml"))
    assert sorted(PRESETS) == files and "best" not in PRESETS
    assert resolve_config("fast").model == "masknet" and resolve_config("seed").loss == "mse"


def test_old_saved_strings_equal_typed_values():
    """A run saved before the fields were typed ("snr": "-10:15") resumes without a false difference."""
    cfg = resolve_config("fast", manifest="m.csv", out="r")
    saved = json.loads(json.dumps({**cfg.__dict__, "snr": "-10:15", "speed": "0.85:1.15", "babble_talkers": "3:7",
                                   "noise": ",".join(cfg.noise), "snr_focus": ""}))
    assert saved_differences(saved, cfg) == []
    assert saved_differences({**saved, "snr": "-5:15"}, cfg) == ["snr: [-5.0, 15.0] → [-10.0, 15.0]"]


def test_warmup_then_cosine():
    cfg = TrainConfig(lr=1e-3, warmup=10, schedule="cosine")
    lrs = [learning_rate(cfg, s, 110) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3) and lrs[10] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(5e-5) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_train_without_manifest_is_a_one_line_error(tmp_path):
    r = write(tmp_path / "r.toml", 'preset = "fast"\nout = "runs/x"\n')
    out = subprocess.run([sys.executable, "-m", "digit_denoise", "train", "--config", str(r)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("digit-denoise: error: --manifest: give a manifest CSV")


def test_every_recipe_in_the_repository_parses():
    recipes = sorted((REPO / "recipes").rglob("*.toml"))
    assert len(recipes) >= 8
    for r in recipes:
        cfg = load_config(r)
        assert r.name.startswith("_") or cfg.out.startswith("runs/"), r  # a whole recipe names its run folder


@pytest.mark.parametrize("name", [n for n, p in REGISTRY.items() if p.recipes])
def test_each_shipped_model_matches_its_recipe_file(name):
    """The recipe that made a shipped model gives the training settings stored in its JSON: a recipe cannot
    drift from what was shipped (and the JSON names it)."""
    p = REGISTRY[name]
    training = json.loads(p.config.read_text(encoding="utf-8"))["training"]
    assert training["recipe"] == p.recipes[-1]
    assert recipe_differences(REPO / p.recipes[-1], training) == []
    for earlier in p.recipes[:-1]:  # every stage of a chain exists and parses
        load_config(REPO / earlier)


def test_shipped_models_hold_no_absolute_paths():
    for p in REGISTRY.values():
        text = p.config.read_text(encoding="utf-8")
        assert '"/' not in text and ":\\\\" not in text, p.config
