"""Packaging a run as the shipped default model, and the published GTCRN weights."""

from __future__ import annotations

import pytest
import torch

from digit_denoise.checkpoint import load_model
from digit_denoise.models import build_model

TINY = {"channels": 8, "dilations": [1, 2]}


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.numerics
def test_ship_writes_a_half_precision_model_that_loads(tmp_path):
    from digit_denoise.checkpoint import model_meta, save_checkpoint
    from tools.ship import ship

    m = build_model("masknet", TINY).eval()
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('preset = "fast"\nout = "runs/tiny"\n')
    path = ship(tmp_path / "ck", "tiny", tmp_path / "pre", note={"trained_on": "test"}, recipe=str(recipe))
    m2, meta = load_model(path)
    assert meta["weights_dtype"] == "float16" and meta["trained_on"] == "test"
    assert next(m2.parameters()).dtype == torch.float32
    x = _x(1, 4000)
    with torch.no_grad():
        a, b = m(x), m2(x)
    assert float((a - b).abs().max()) < 1e-2 * float(a.abs().max())
    exact = ship(tmp_path / "ck", "exact", tmp_path / "pre", dtype="float32", recipe=str(recipe))  # bit for bit
    m3, meta3 = load_model(exact)
    assert meta3["weights_dtype"] == "float32" and exact.stat().st_size > 1.8 * path.stat().st_size  # header aside
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in m3.state_dict().items())
    assert "atten_lim_db" not in meta3
    limited = ship(tmp_path / "ck", "limited", tmp_path / "pre", dtype="float32", recipe=str(recipe), atten_lim_db=25)
    from digit_denoise.enhance import Denoiser

    den = Denoiser.from_checkpoint(limited)
    assert load_model(limited)[1]["atten_lim_db"] == 25.0 and abs(den.mix - 10 ** (-25 / 20)) < 1e-12
    from digit_denoise.errors import UserError

    with pytest.raises(UserError, match="--atten-lim -1"):
        ship(tmp_path / "ck", "bad", tmp_path / "pre", recipe=str(recipe), atten_lim_db=-1)
    assert not (tmp_path / "pre" / "bad.json").exists()


def test_ship_records_the_recipe_and_no_machine_paths(tmp_path, monkeypatch):
    """The shipped JSON carries what the run learned from (not where it ran), the recipe that made it (checked
    against the run), relative paths and its wall time."""
    import json

    from helpers import make_manifest

    from digit_denoise.errors import UserError
    from digit_denoise.training.config import load_config
    from digit_denoise.training.loop import train
    from tools.ship import ship

    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the checkout
    make_manifest(tmp_path / "data")
    recipe = tmp_path / "recipes" / "small.toml"
    recipe.parent.mkdir()
    recipe.write_text('preset = "fast"\nmanifest = ["data/manifest.csv"]\nmodel_config = { channels = 8, '
                      'dilations = [1, 2] }\nbatch_size = 8\nmax_steps = 4\nval_every = 2\nsegment = 0.5\n'
                      'noise = ["white"]\nsnr = [0, 5]\nthreads = 1\ndevice = "cpu"\nout = "runs/small"\n')
    train(load_config("recipes/small.toml"))
    path = ship("runs/small", "small", tmp_path / "pre")
    meta = json.loads(path.with_suffix(".json").read_text())
    t = meta["training"]
    assert t["preset"] == "fast" and t["noise"] == ["white"] and t["manifest"] == ["data/manifest.csv"]
    assert t["recipe"] == "recipes/small.toml" and str(tmp_path) not in path.with_suffix(".json").read_text()
    assert "threads" not in t and "out" not in t and t["elapsed_s"] > 0 and t["samples_per_s"] > 0
    assert path.name == "small.safetensors" and load_model(path)[1]["step"] == meta["step"]
    other = tmp_path / "recipes" / "other.toml"
    other.write_text(recipe.read_text().replace("snr = [0, 5]", "snr = [0, 6]"))
    with pytest.raises(UserError, match=r"other.toml: does not match the run .*snr: \[0.0, 5.0\] → \[0.0, 6.0\]"):
        ship("runs/small", "small", tmp_path / "pre", recipe=str(other))
    cfg = load_config("recipes/small.toml", out="runs/flags")
    cfg.recipe = ""  # trained from flags alone
    train(cfg)
    with pytest.raises(UserError, match="not made from a recipe file; pass --recipe"):
        ship("runs/flags", "flags", tmp_path / "pre")
    with pytest.raises(UserError, match="not in the registry"):
        ship("runs/small", "no-such-name")


def test_packaged_models_resolve_by_name():
    from digit_denoise.pretrained import REGISTRY, available, packaged_path

    assert available() == list(REGISTRY)  # this checkout ships every registered model
    for name in REGISTRY:
        model, meta = load_model(name)
        assert packaged_path(name).is_file() and model.kind == "wave" and meta["sample_rate"] == 16000
        assert meta["model"] == REGISTRY[name].family


def test_ship_int8_quarters_the_file_and_loads_back_close(tmp_path):
    from digit_denoise.checkpoint import model_meta, save_checkpoint
    from tools.ship import ship

    m = build_model("masknet", {"channels": 64, "dilations": [1, 2, 4], "norm": "utterance", "mix": False}).eval()
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000))
    recipe = tmp_path / "r.toml"
    recipe.write_text('preset = "fast"\nout = "runs/r"\n')
    f32 = ship(tmp_path / "ck", "f32", tmp_path / "pre", dtype="float32", recipe=str(recipe))
    i8 = ship(tmp_path / "ck", "i8", tmp_path / "pre", dtype="int8", recipe=str(recipe))
    assert i8.stat().st_size < 0.35 * f32.stat().st_size
    m8, meta = load_model(i8)
    assert meta["weights_dtype"] == "int8" and next(m8.parameters()).dtype == torch.float32
    x = _x(1, 16000)
    with torch.no_grad():
        a, b = m(x), m8(x)
    assert float((a - b).pow(2).sum() / a.pow(2).sum()) < 1e-3  # within ~30 dB of the float model
