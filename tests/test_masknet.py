"""MaskNet (waveform spectral-mask model), its losses, on-the-fly wave batches and wave training."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from digit_denoise.checkpoint import load_model
from digit_denoise.losses import neg_si_sdr
from digit_denoise.models import build_model, count_parameters, model_config
from digit_denoise.models.masknet import STFT, MaskNetConfig

TINY = {"channels": 8, "dilations": [1, 2]}


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", [0, 1, 127, 128, 513, 16000])
@pytest.mark.parametrize("n_fft,hop", [(512, 128), (1024, 256)])
def test_stft_pair_reconstructs_exactly_for_any_length(n, n_fft, hop):
    st = STFT(n_fft, hop)
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


@pytest.mark.parametrize("mask, norm", [("magnitude", "frame"), ("complex", "frame"), ("polar", "frame"),
                                        ("filter", "utterance"), ("magnitude", "utterance")])
def test_every_parameter_trains_and_shapes_hold(mask, norm):
    m = build_model("masknet", {**TINY, "mask": mask, "norm": norm})
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    x, c = _x(3, 3000), _x(3, 3000, seed=1)
    y = m(x)
    assert y.shape == x.shape
    neg_si_sdr(y, c).backward()
    opt.step()
    unchanged = [k for k, v in m.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged


def test_polar_mask_starts_as_the_magnitude_model_it_is_initialised_from():
    """A magnitude model's weights load into a polar one (head widened, phase part at e^{i0}): the same output
    to float precision; then the phase part learns, and a fresh polar model also starts at zero phase."""
    mag = build_model("masknet", TINY).eval()
    pol = build_model("masknet", {**TINY, "mask": "polar"}).eval()
    with pytest.raises(RuntimeError):  # the head does not fit as it is
        pol.load_state_dict(mag.state_dict(), strict=True)
    pol.load_state_dict(pol.adapt_state(mag.state_dict()), strict=True)
    x = _x(2, 4000)
    with torch.no_grad():
        assert float((pol(x) - mag(x)).abs().max()) < 1e-5
        _, mi = pol.mask(*pol.stft.analysis(x))
        assert float(mi.abs().max()) < 1e-6  # zero phase correction
    assert pol.adapt_state(pol.state_dict())["out.weight"].shape[0] == 3 * 257  # a polar state stays as it is
    fresh = build_model("masknet", {**TINY, "mask": "polar"}).eval()
    with torch.no_grad():
        _, mi = fresh.mask(*fresh.stft.analysis(x))
    assert float(mi.abs().max()) < 1e-6
    pol.train()
    opt = torch.optim.Adam(pol.parameters(), lr=1e-2)
    neg_si_sdr(pol(x), _x(2, 4000, seed=1)).backward()
    opt.step()
    with torch.no_grad():
        _, mi = pol.mask(*pol.stft.analysis(x))
    assert float(mi.abs().max()) > 1e-4  # the phase part moved


@pytest.mark.parametrize("norm,stft", [("none", {}), ("frame", {}), ("frame", {"n_fft": 1024, "hop": 256})])
def test_receptive_field_is_what_the_model_claims(norm, stft):
    """Per-frame norm keeps the model local in time: a click moves only its receptive field (the 1024-point
    STFT option too, whose frames are twice as long)."""
    m = build_model("masknet", {**TINY, "norm": norm, **stft}).eval()
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


@pytest.mark.parametrize("norm", ["none", "utterance"])
def test_filter_mask_starts_as_the_magnitude_model_and_its_filter_changes_the_phase(norm):
    """A magnitude model's weights load into a filter one (its complex taps at zero): the same output; with
    taps that are not zero the output is no longer the noisy phase times a real gain."""
    cfg = {**TINY, "norm": norm, "mix": False}
    mag = build_model("masknet", cfg).eval()
    fil = build_model("masknet", {**cfg, "mask": "filter"}).eval()
    fil.load_state_dict(fil.adapt_state(mag.state_dict()), strict=True)
    x = _x(2, 4000)
    with torch.no_grad():
        assert float((fil(x) - mag(x)).abs().max()) < 1e-6
        fil.out.weight[257:].normal_(0, 0.05)
        y = fil(x)
        re, im = fil.stft.analysis(x)
        yr, yi = fil.stft.analysis(y)
        ratio_phase = torch.atan2(yi * re - yr * im, yr * re + yi * im)  # angle of Y / X per bin
        assert float(ratio_phase.abs().amax()) > 0.1  # the phase moved
    assert fil.context_frames == mag.context_frames + 2  # the ±2 taps widen the receptive field
