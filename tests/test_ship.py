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
def test_ship_writes_a_half_precision_default_that_loads(tmp_path):
    from digit_denoise.checkpoint import model_meta, save_checkpoint
    from digit_denoise.ship import ship

    m = build_model("masknet", TINY).eval()
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000))
    path = ship(tmp_path / "ck", tmp_path / "pre", note={"trained_on": "test"})
    m2, meta = load_model(path)
    assert meta["weights_dtype"] == "float16" and meta["trained_on"] == "test"
    assert next(m2.parameters()).dtype == torch.float32
    x = _x(1, 4000)
    with torch.no_grad():
        a, b = m(x), m2(x)
    assert float((a - b).abs().max()) < 1e-2 * float(a.abs().max())
    exact = ship(tmp_path / "ck", tmp_path / "pre", name="exact", dtype="float32")  # the measured weights, bit for bit
    m3, meta3 = load_model(exact)
    assert meta3["weights_dtype"] == "float32" and exact.stat().st_size > 1.8 * path.stat().st_size  # header aside
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in m3.state_dict().items())


def test_ship_records_the_training_run(tmp_path, monkeypatch):
    """The shipped JSON carries what the run learned from (not where it ran) and its wall time."""
    import json

    from helpers import make_manifest, train_cfg

    from digit_denoise.ship import ship
    from digit_denoise.training.loop import train

    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    train(train_cfg(make_manifest(tmp_path / "data"), run, preset="fast", model_config=dict(TINY), batch_size=8,
                    max_steps=4, val_every=2, segment=0.5, noise="white", snr="0:5"))
    path = ship(run, tmp_path / "pre", name="small")
    meta = json.loads(path.with_suffix(".json").read_text())
    t = meta["training"]
    assert t["preset"] == "fast" and t["noise"] == "white" and t["manifest"].endswith("manifest.csv")
    assert "threads" not in t and "out" not in t and t["elapsed_s"] > 0 and t["samples_per_s"] > 0
    assert path.name == "small.safetensors" and load_model(path)[1]["step"] == meta["step"]


def test_packaged_models_resolve_by_name():
    from digit_denoise.checkpoint import PACKAGED_MODELS, packaged_model

    for name in PACKAGED_MODELS:
        model, meta = load_model(name)
        assert packaged_model(name).is_file() and model.kind == "wave" and meta["sample_rate"] == 16000
