"""Denoiser.enhance: shapes, kinds and dtypes in → out, edge cases, Griffin-Lim determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import SR, make_manifest, tone, train_cfg

from digit_denoise.enhance import Denoiser
from digit_denoise.errors import UserError
from digit_denoise.pretrained import REGISTRY
from digit_denoise.training.loop import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("enh")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGIT_DENOISE_CACHE", str(root / "cache"))
        m = make_manifest(root / "data")
        train(train_cfg(m, root / "run", max_steps=2, val_every=2))
    return root / "run"


@pytest.fixture(scope="module")
def den(run):
    return Denoiser.from_checkpoint(run)


def _noisy(n=int(0.3 * SR), seed=0):
    rng = np.random.default_rng(seed)
    t = np.resize(tone(150.0, 3, 0), n)  # tiled / cropped to n samples
    return (t + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_numpy_mono_and_stereo(den):
    x = _noisy()
    y = den.enhance(x, SR)
    assert isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all() and np.abs(y).max() > 0
    assert not np.allclose(y, x)
    # float64 input and an odd length at another rate
    x2 = _noisy(2999).astype(np.float64)
    y2 = den.enhance(x2, 11025)
    assert y2.shape == (2999,) and y2.dtype == np.float32 and np.isfinite(y2).all()

    st = np.stack([x, _noisy(seed=1)])
    ys = den.enhance(st, SR)
    assert ys.shape == (2, x.size) and ys.dtype == np.float32
    # each channel is denoised on its own
    assert np.allclose(ys[0], y, atol=1e-5)


def test_tensor_in_tensor_out(den):
    x = torch.from_numpy(_noisy())
    y = den.enhance(x, SR)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    x64 = x.double()[None].repeat(2, 1)
    y64 = den.enhance(x64, SR)
    assert y64.dtype == torch.float64 and y64.shape == (2, x.numel())
    assert torch.allclose(y64[0].float(), y, atol=1e-5)


def test_path_in(den, tmp_path):
    p = tmp_path / "in.wav"
    sf.write(str(p), np.stack([_noisy(), _noisy(seed=2)], axis=1), SR, subtype="PCM_16")
    y, sr = den.enhance(p)
    assert sr == SR and y.shape == (2, int(0.3 * SR)) and y.dtype == np.float32
    y2, _ = den.enhance(str(p))
    assert np.array_equal(y, y2)


def test_edge_cases(den):
    assert den.enhance(np.zeros(0, np.float32), SR).shape == (0,)
    assert den.enhance(np.zeros((2, 0), np.float32), SR).shape == (2, 0)
    assert den.enhance(torch.zeros(0), SR).shape == (0,)
    for n in (1, 37, 600):  # shorter than one 48 kHz STFT frame (after resampling) and a few frames
        y = den.enhance(_noisy(n), SR)
        assert y.shape == (n,) and np.isfinite(y).all()
    y = den.enhance(np.zeros(2400, np.float32), SR)  # digital silence
    assert y.shape == (2400,) and np.isfinite(y).all()
    bad = _noisy()
    bad[10] = np.nan
    with pytest.raises(UserError):
        den.enhance(bad, SR)
    bad[10] = np.inf
    with pytest.raises(UserError):
        den.enhance(torch.from_numpy(bad), SR)
    with pytest.raises(UserError):
        den.enhance(_noisy(), None)
    with pytest.raises(UserError):
        den.enhance(np.zeros((1, 2, 3), np.float32), SR)


def test_griffinlim_deterministic_and_unknown_phase(run):
    x = _noisy()
    a = Denoiser.from_checkpoint(run, phase="griffinlim", gl_iters=4, seed=3).enhance(x, SR)
    b = Denoiser.from_checkpoint(run, phase="griffinlim", gl_iters=4, seed=3).enhance(x, SR)
    assert a.shape == x.shape and np.isfinite(a).all()
    assert np.array_equal(a, b)
    c = Denoiser.from_checkpoint(run, phase="griffinlim", gl_iters=4, seed=4).enhance(x, SR)
    assert not np.array_equal(a, c)
    with pytest.raises(UserError) as e:
        Denoiser.from_checkpoint(run, phase="zero")
    assert "phase" in str(e.value) and "\n" not in str(e.value)


UTTERANCE_NORM = [n for n, p in REGISTRY.items()
                  if p.weights.is_file() and (json.loads(p.config.read_text()).get("config") or {}).get("norm") == "utterance"]
SPEECH16K = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech16k" / "speechocean762"


@pytest.mark.slow
@pytest.mark.skipif(not UTTERANCE_NORM or not SPEECH16K.is_dir(),
                    reason="no shipped model normalises per utterance, or no speech16k in ../shared")
@pytest.mark.parametrize("name", UTTERANCE_NORM)
def test_a_long_file_in_30_s_windows_is_within_0_1_db_of_whole_file_processing(name):
    """A per-utterance norm sees each 30-s window's own statistics, not the whole file's: on 75 s of real
    speech in white noise (0 and −5 dB) the windowed output's SI-SDR stays within 0.1 dB of the whole file's."""
    from digit_denoise.metrics import si_sdr

    files = sorted(SPEECH16K.glob("*/*.flac"))[:40]
    clean = np.concatenate([sf.read(f, dtype="float32")[0] for f in files])[:16000 * 75]
    rng = np.random.default_rng(0)
    whole_den = Denoiser.from_checkpoint(name, chunk_seconds=100)
    chunk_den = Denoiser.from_checkpoint(name)
    assert chunk_den.chunk_seconds == 30 and clean.size > 2.4 * 30 * 16000
    for snr in (0, -5):
        noise = rng.standard_normal(clean.size).astype(np.float32)
        noisy = clean + noise * np.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2)) * 10 ** (-snr / 20)
        c = torch.from_numpy(clean)
        whole = float(si_sdr(c, torch.from_numpy(whole_den.enhance(noisy, 16000))))
        chunked = float(si_sdr(c, torch.from_numpy(chunk_den.enhance(noisy, 16000))))
        assert abs(whole - chunked) < 0.1, (snr, whole, chunked)
