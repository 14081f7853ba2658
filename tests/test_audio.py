"""audio.py: reading every common WAV subtype, resampling, and atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from digit_denoise import audio
from digit_denoise.audio import atomic_path, info, load_audio, resample, write_audio
from digit_denoise.errors import UserError


def tone(sr: int, dur: float = 0.3, f0: float = 220.0, channels: int = 1) -> np.ndarray:
    """Harmonic tone, float (samples,) or (samples, channels) as soundfile wants it."""
    t = np.arange(int(sr * dur)) / sr
    x = sum(0.5 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 5)) * 0.6
    if channels == 1:
        return x.astype(np.float64)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 1 / 64), ("PCM_16", 1e-4), ("PCM_24", 1e-6),
                                         ("PCM_32", 1e-7), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)])
def test_load_every_wav_subtype(tmp_path, subtype, tol):
    x = tone(8000)
    p = tmp_path / f"t_{subtype}.wav"
    sf.write(p, x, 8000, subtype=subtype)
    y, sr = load_audio(p)
    assert sr == 8000
    assert y.dtype == np.float32 and y.shape == (1, x.size)
    assert np.max(np.abs(y[0] - x)) < tol
    hdr = info(p)
    assert hdr.frames == x.size and hdr.sample_rate == 8000 and hdr.channels == 1
    assert hdr.duration == pytest.approx(0.3)


def test_stereo_shape_and_mono_average(tmp_path):
    x = tone(16000, channels=2)
    p = tmp_path / "st.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    y, sr = load_audio(p)
    assert y.shape == (2, x.shape[0]) and sr == 16000
    np.testing.assert_allclose(y[1], x[:, 1], atol=1e-7)
    m, _ = load_audio(p, mono=True)
    assert m.shape == (1, x.shape[0])
    np.testing.assert_allclose(m[0], x.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("sr_in,sr_out", [(16000, 8000), (8000, 16000), (16000, 11025), (24000, 16000)])
def test_resample_length(tmp_path, sr_in, sr_out):
    x = tone(sr_in)
    p = tmp_path / "r.wav"
    sf.write(p, x, sr_in)
    y, sr = load_audio(p, sr=sr_out)
    assert sr == sr_out
    assert abs(y.shape[-1] - round(x.size * sr_out / sr_in)) <= 1
    # 220 Hz fundamental survives: correlation with the analytic tone at the new rate
    ref = tone(sr_out)[: y.shape[-1]]
    n = min(ref.size, y.shape[-1]) - 200
    assert np.corrcoef(ref[100:n], y[0, 100:n])[0, 1] > 0.99
    # 1-D and 2-D inputs, and empty input
    assert resample(x.astype(np.float32), sr_in, sr_out).ndim == 1
    assert resample(np.zeros((2, 0), np.float32), sr_in, sr_out).shape == (2, 0)
    same = resample(x, sr_in, sr_in)
    assert same.dtype == np.float32 and same.shape == x.shape


def test_nan_and_inf_float_wav_is_user_error(tmp_path):
    x = tone(8000).astype(np.float32)
    x[100] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, 8000, subtype="FLOAT")
    with pytest.raises(UserError, match="NaN"):
        load_audio(p)
    x[100] = np.inf
    sf.write(p, x, 8000, subtype="FLOAT")
    with pytest.raises(UserError):
        load_audio(p)


def test_unreadable_missing_and_folder(tmp_path):
    txt = tmp_path / "text.wav"
    txt.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for p in (txt, empty, tmp_path / "missing.wav", tmp_path):
        with pytest.raises(UserError) as ei:
            load_audio(p)
        assert "\n" not in str(ei.value) and str(p) in str(ei.value)
        with pytest.raises(UserError):
            info(p)


def test_write_audio_round_trip_and_extension(tmp_path):
    x = tone(8000, channels=2).T.astype(np.float32)  # (channels, samples)
    p = write_audio(tmp_path / "sub" / "out.wav", x, 8000, subtype="FLOAT")
    y, sr = load_audio(p)
    assert sr == 8000 and np.array_equal(y, x)
    p2 = write_audio(tmp_path / "mono.flac", x[0], 8000)
    assert info(p2).format == "FLAC" and info(p2).channels == 1
    with pytest.raises(UserError, match="extension"):
        write_audio(tmp_path / "out.xyz", x, 8000)
    assert not (tmp_path / "out.xyz").exists()


def test_write_audio_refuses_existing_and_keeps_original(tmp_path):
    p = tmp_path / "o.wav"
    write_audio(p, tone(8000), 8000)
    before = p.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        write_audio(p, np.zeros(100), 8000)
    assert p.read_bytes() == before
    write_audio(p, np.zeros(100), 8000, overwrite=True)
    assert info(p).frames == 100
    assert sorted(f.name for f in tmp_path.iterdir()) == ["o.wav"]


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    p = tmp_path / "o.wav"
    p.write_bytes(b"original")

    class Boom:  # opens the file, writes half, then the disk is full
        def __init__(self, file, *a, **k):
            self.file = file

        def __enter__(self):
            with open(self.file, "wb") as f:
                f.write(b"half")
            return self

        def __exit__(self, *exc):
            return False

        def write(self, block):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(audio.sf, "SoundFile", Boom)
    with pytest.raises(UserError, match="could not write.*No space left"):
        write_audio(p, tone(8000), 8000, overwrite=True)
    assert p.read_bytes() == b"original"
    with pytest.raises(UserError):
        write_audio(tmp_path / "new.wav", tone(8000), 8000)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["o.wav"]


def test_atomic_path_cleans_up_on_error_and_respects_umask(tmp_path):
    target = tmp_path / "a.csv"
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            1 / 0
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert list(tmp_path.iterdir()) == [target]
    # a written file gets the usual permissions (umask), not mkstemp's private 0600
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(UserError, match="already exists"):
        with atomic_path(target, overwrite=False):
            pass
