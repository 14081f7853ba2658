"""MaskNet (waveform spectral-mask model), its losses, on-the-fly wave batches and wave training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from digit_denoise.checkpoint import load_model
from digit_denoise.losses import mrstft, neg_si_sdr, wave_loss
from digit_denoise.models import build_model, count_parameters, model_config
from digit_denoise.models.masknet import STFT, MaskNetConfig
from digit_denoise.train import read_history, train
from digit_denoise.data.batches import ClipBank, WaveBatchConfig, generator, make_batch

from helpers import make_manifest, train_cfg

TINY = {"channels": 8, "dilations": [1, 2]}


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", [0, 1, 127, 128, 513, 16000])
def test_stft_pair_reconstructs_exactly_for_any_length(n):
    st = STFT(512, 128)
    x = _x(2, n)
    for fft in (True, False):
        st.use_fft = fft
        y = st.synthesis(*st.analysis(x), n)
        assert y.shape == x.shape
        if n:
            assert float((y - x).abs().max()) < 1e-5


@pytest.mark.numerics
def test_fft_and_conv_paths_agree():
    m = build_model("masknet", {"channels": 16, "mask": "complex"}).eval()
    x = _x(2, 4000)
    with torch.no_grad():
        a = m(x)
        m.stft.use_fft = False
        b = m(x)
    assert float((a - b).abs().max()) < 1e-5


@pytest.mark.parametrize("mask", ["magnitude", "complex"])
def test_every_parameter_trains_and_shapes_hold(mask):
    m = build_model("masknet", {**TINY, "mask": mask, "norm": "frame"})
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    x, c = _x(3, 3000), _x(3, 3000, seed=1)
    y = m(x)
    assert y.shape == x.shape
    neg_si_sdr(y, c).backward()
    opt.step()
    unchanged = [k for k, v in m.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged


@pytest.mark.parametrize("norm", ["none", "frame"])
def test_receptive_field_is_what_the_model_claims(norm):
    """Per-frame norm keeps the model local in time: a click moves only its receptive field."""
    m = build_model("masknet", {**TINY, "norm": norm}).eval()
    ctx = m.context_samples
    n = 4 * ctx
    x = _x(1, n)
    y0 = m(x)
    x2 = x.clone()
    x2[0, n // 2] += 1.0  # a click in the middle
    y1 = m(x2)
    changed = ((y1 - y0).abs() > 1e-7).nonzero()[:, 1]
    assert changed.numel() > 0
    assert int(changed.min()) >= n // 2 - ctx and int(changed.max()) <= n // 2 + ctx


def test_save_load_gives_identical_outputs(tmp_path):
    from digit_denoise.checkpoint import model_meta, save_checkpoint

    m = build_model("masknet", TINY).eval()
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000))
    m2, meta = load_model(tmp_path / "ck")
    x = _x(2, 5000)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert meta["features"] == {"kind": "wave"} and meta["config"]["dilations"] == [1, 2]
    assert MaskNetConfig.from_dict(meta["config"]) == m.config


def test_config_errors():
    with pytest.raises(Exception, match="mask"):
        model_config("masknet", {"mask": "phase"})
    with pytest.raises(Exception, match="kernel"):
        model_config("masknet", {"kernel": 4})


def test_self_check_runs():
    out = subprocess.run([sys.executable, "-m", "digit_denoise.models", "--name", "masknet"], capture_output=True,
                         text=True, check=True).stdout
    assert "trainable parameters" in out and "ok" in out and "FLOPs per second" in out
    assert f"{count_parameters(build_model('masknet')):,}" in out


def test_losses():
    c = _x(4, 8000)
    assert float(neg_si_sdr(c, c)) < -60  # perfect: very high SI-SDR
    assert float(neg_si_sdr(3 * c, c)) < -60  # scale-invariant
    noisy = c + 0.5 * _x(4, 8000, seed=3)
    assert float(neg_si_sdr(noisy, c)) == pytest.approx(-10 * np.log10(1 / 0.25), abs=0.3)
    assert float(mrstft(c, c)) < 1e-5 < float(mrstft(noisy, c))
    assert float(wave_loss("sisdr+mrstft")(noisy, c)) > float(wave_loss("sisdr+mrstft")(c, c))
    with pytest.raises(ValueError):
        wave_loss("l1")


def test_batches_are_pure_functions_of_their_keys_and_hit_the_snr():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 9000, 20000, 16000)]
    bank = ClipBank(waves, ["a", "b", "a", "c"])
    cfg = WaveBatchConfig(snr=(5.0, 5.0), kinds=("white", "babble", "colored"), augment=False)
    idx = torch.tensor([0, 1, 2, 3])
    n1, c1 = make_batch(bank, idx, cfg, generator("x", 1), {}, False)
    n2, c2 = make_batch(bank, idx, cfg, generator("x", 1), {}, False)
    assert torch.equal(n1, n2) and torch.equal(c1, c2)
    n3, _ = make_batch(bank, idx, cfg, generator("x", 2), {}, False)
    assert not torch.equal(n1, n3)
    assert n1.shape == (4, 16000) and float(n1.abs().max()) <= 0.99 + 1e-6
    # SNR over the clip's own samples (a short clip sits in silence inside the window)
    active = (c1 != 0).sum(-1)
    snr = 10 * torch.log10(c1.pow(2).sum(-1) / active / (n1 - c1).pow(2).mean(-1))
    assert torch.allclose(snr, torch.full((4,), 5.0), atol=0.2)
    assert int(active[0]) == 4000  # the 0.25 s clip is whole


@pytest.mark.numerics
def test_wave_training_learns_and_resumes_exactly(tmp_path, monkeypatch):
    """Bit-exact on purpose: both arms run in this process with the same thread count, so the same
    kernels compute every step (a resume must not change a single bit)."""
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    manifest = make_manifest(tmp_path / "data")
    kw = dict(preset="fast", model_config=dict(TINY), batch_size=8, val_every=6, lr=3e-3, segment=0.5,
              noise="white,pink", snr="0:5")
    a, b = tmp_path / "a", tmp_path / "b"
    s = train(train_cfg(manifest, a, max_steps=12, **kw))
    hist = read_history(a)
    assert s["steps"] == 12 and [r["step"] for r in hist] == [6, 12]
    assert min(r["val_loss"] for r in hist[1:]) < hist[0]["val_loss"] < 0  # -SI-SDR in dB: noisy input is > 0 dB
    meta = json.loads((a / "checkpoints" / "best" / "model.json").read_text())
    assert meta["model"] == "masknet" and meta["features"] == {"kind": "wave"} and meta["sample_rate"] == 16000
    # stop at 5 (a mid-run resume point), resume to 12: the same weights as the straight run
    train(train_cfg(manifest, b, max_steps=5, save_every=5, **kw))
    train(train_cfg(manifest, b, max_steps=12, **kw))
    from safetensors.torch import load_file

    wa = load_file(str(a / "checkpoints" / "last" / "model.safetensors"))
    wb = load_file(str(b / "checkpoints" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


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


def test_waveform_training_merges_manifests(tmp_path, monkeypatch):
    """`--manifest a.csv,b.csv`: train/val rows of both; evaluate uses the first manifest."""
    from digit_denoise.evaluate import _run_manifest
    from digit_denoise.data.manifest import load_manifest, select
    from digit_denoise.train import make_wave_data

    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    m1, m2 = make_manifest(tmp_path / "d1"), make_manifest(tmp_path / "d2", test_speakers="2")
    cfg = train_cfg(f"{m1},{m2}", tmp_path / "run", preset="fast", model_config=dict(TINY), batch_size=8,
                    max_steps=2, val_every=2, segment=0.5)
    data = make_wave_data(cfg, 16000)
    n1, n2 = (len(select(load_manifest(m), "train")) for m in (m1, m2))
    assert len(data.train) == n1 + n2 > max(n1, n2)
    train(cfg)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["manifest"]
    assert saved == f"{m1.resolve()},{m2.resolve()}"
    assert Path(_run_manifest(tmp_path / "run", None)) == m1.resolve()
