"""TasNet (time-domain waveform model): the shared model checks, chunked inference, training."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import make_manifest, train_cfg

from digit_denoise.checkpoint import load_model, model_meta, save_checkpoint
from digit_denoise.losses import neg_si_sdr
from digit_denoise.models import build_model, count_parameters, model_config, receptive_field, wave_flops_per_second
from digit_denoise.models.tasnet import TasNetConfig
from digit_denoise.training.config import resolve_config
from digit_denoise.training.loop import train
from digit_denoise.training.runlog import read_history

TINY = {"filters": 16, "bottleneck": 8, "hidden": 16, "dilations": [1, 2, 4]}


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", [0, 1, 15, 16, 33, 4001])
def test_any_length_gives_the_same_length(n):
    m = build_model("tasnet", TINY).eval()
    with torch.no_grad():
        assert m(_x(2, n)).shape == (2, n)


def test_every_parameter_trains():
    m = build_model("tasnet", TINY)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    x, c = _x(3, 3000), _x(3, 3000, seed=1)
    neg_si_sdr(m(x), c).backward()
    assert [k for k, v in m.named_parameters() if v.grad is None] == []
    opt.step()
    assert [k for k, v in m.named_parameters() if torch.equal(v, before[k])] == []


def test_receptive_field_is_what_the_model_claims():
    m = build_model("tasnet", TINY).eval()
    ctx = m.context_samples
    assert receptive_field("tasnet") == 2 * build_model("tasnet").context_samples + 1
    n = 4 * ctx
    x = _x(1, n)
    x2 = x.clone()
    x2[0, n // 2] += 1.0
    with torch.no_grad():
        changed = ((m(x2) - m(x)).abs() > 1e-7).nonzero()[:, 1]
    assert changed.numel() > 0
    assert int(changed.min()) >= n // 2 - ctx and int(changed.max()) <= n // 2 + ctx


def test_output_scales_with_the_input():
    """Per-frame channel norm: the mask barely depends on the level, so the output follows the gain."""
    m = build_model("tasnet", TINY).eval()
    x = 0.1 * _x(1, 8000)
    with torch.no_grad():
        a, b = m(x), m(10 * x)
    assert float((b - 10 * a).abs().max()) < 1e-2 * float(b.abs().max())


def test_save_load_gives_identical_outputs(tmp_path):
    m = build_model("tasnet", TINY).eval()
    save_checkpoint(tmp_path / "ck", m, model_meta("tasnet", m.config.to_dict(), {"kind": "wave"}, 16000))
    m2, meta = load_model(tmp_path / "ck")
    x = _x(2, 5000)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert meta["model"] == "tasnet" and TasNetConfig.from_dict(meta["config"]) == m.config


@pytest.mark.numerics
def test_chunked_denoise_equals_whole_clip(tmp_path):
    """The streaming Denoiser (windows with context) gives the whole-clip output for a time-domain model."""
    from digit_denoise.enhance import Denoiser

    torch.manual_seed(0)
    m = build_model("tasnet", TINY).eval()
    save_checkpoint(tmp_path / "ck", m, model_meta("tasnet", m.config.to_dict(), {"kind": "wave"}, 16000))
    x = 0.1 * _x(1, 16000 * 3).numpy()
    whole = Denoiser.from_checkpoint(tmp_path / "ck", chunk_seconds=10.0).enhance(x, 16000)
    chunked = Denoiser.from_checkpoint(tmp_path / "ck", chunk_seconds=0.25).enhance(x, 16000)
    assert whole.shape == chunked.shape == x.shape
    assert float(np.abs(whole - chunked).max()) < 1e-4 * float(np.abs(whole).max())


def test_config_errors():
    with pytest.raises(Exception, match="multiple"):
        model_config("tasnet", {"kernel": 30, "hop": 16})
    with pytest.raises(Exception, match="odd"):
        model_config("tasnet", {"block_kernel": 4})
    with pytest.raises(Exception, match="unknown"):
        model_config("tasnet", {"channels": 3})


def test_self_check_runs():
    out = subprocess.run([sys.executable, "-m", "digit_denoise.models", "--name", "tasnet"], capture_output=True,
                         text=True, check=True).stdout
    m = build_model("tasnet")
    assert f"{count_parameters(m):,}" in out and "ok" in out
    assert f"{wave_flops_per_second(m):,}" in out


def test_another_family_drops_the_presets_model_settings():
    cfg = resolve_config("fast", model="tasnet")
    assert cfg.model == "tasnet" and cfg.model_config == {}
    assert resolve_config("fast", model="tasnet", model_config={"filters": 64}).model_config == {"filters": 64}


def test_tiny_training_run_learns(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    manifest = make_manifest(tmp_path / "data")
    run = tmp_path / "run"
    s = train(train_cfg(manifest, run, preset="fast", model="tasnet", model_config=dict(TINY), batch_size=8,
                        max_steps=16, val_every=8, lr=3e-3, segment=0.5, noise="white", snr="0:5"))
    hist = read_history(run)
    assert s["steps"] == 16 and [r["step"] for r in hist] == [8, 16]
    assert min(r["val_loss"] for r in hist[1:]) < hist[0]["val_loss"]  # one run against itself; the best later validation, not the last (robust to kernel-level drift)
    meta = json.loads((run / "checkpoints" / "best" / "model.json").read_text())
    assert meta["model"] == "tasnet" and meta["features"] == {"kind": "wave"}
