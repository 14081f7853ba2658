"""Seed features: parity with the seed project's librosa + OpenCV code, batching, inverses.

Tolerances (measured when written; asserted with margin):
  * mel filterbank vs librosa.filters.mel: max relative diff ~1e-7 (asserted rtol 1e-6);
  * area resize vs cv2.resize(INTER_AREA) on float32, shrinking and growing: ~2e-7 (asserted 1e-5);
  * seed images vs librosa + cv2 reference on real FSDD and synthetic clips: ~1e-5 on [0, 1]
    values (asserted 1e-3); ref_power vs the reference mel max: rtol 1e-4;
  * padded batch vs one call per clip: ~1e-6 (asserted 1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digit_denoise import audio
from digit_denoise.seed.features import (
    SeedFeatureConfig,
    SeedFeatures,
    area_resize,
    mel_filterbank,
    wave_to_seed,
)
from digit_denoise.seed.inversion import griffin_lim, mel_power_to_linear, seed_invert, seed_to_mel_power, with_phase

librosa = pytest.importorskip("librosa")
cv2 = pytest.importorskip("cv2")
sf = pytest.importorskip("soundfile")

SR = 48000


def reference_seed(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The seed project's representation, written with librosa + OpenCV (the spec)."""
    S = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=256)
    db = librosa.power_to_db(S, ref=np.max, amin=1e-10, top_db=80)
    img = (db - db.min()) / (db.max() - db.min())
    return cv2.resize(img, (112, 112), interpolation=cv2.INTER_AREA), S


def _synthetic(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 120 + 80 * np.sin(2 * np.pi * 0.7 * t)
    y = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / SR) / k for k in range(1, 20))
    y = y * (0.2 + np.abs(np.sin(2 * np.pi * 1.3 * t))) + 0.01 * rng.standard_normal(n)
    return (0.1 * y).astype(np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


@pytest.fixture(scope="module")
def fsdd_clips(fsdd_dir) -> list[np.ndarray]:
    """20 FSDD clips at 48 kHz spanning the length range (14 .. 215 frames; 6 longest > 112)."""
    files = sorted((fsdd_dir / "recordings").glob("*.wav"))
    files = sorted(files, key=lambda f: (sf.info(str(f)).frames, f.name))
    picks = [files[i] for i in np.linspace(0, len(files) - 7, 14).astype(int)] + files[-6:]
    return [audio.load_audio(f, sr=SR, mono=True)[0][0] for f in picks]


def test_config_roundtrip():
    cfg = SeedFeatureConfig(n_mels=128, size=(64, 96))
    d = cfg.to_dict()
    assert d["size"] == [64, 96]
    assert SeedFeatureConfig.from_dict(d) == cfg
    assert SeedFeatureConfig.from_dict({}) == SeedFeatureConfig()


@pytest.mark.numerics
def test_mel_filterbank_matches_librosa():
    ours = mel_filterbank(48000, 2048, 256, dtype=torch.float64).numpy()
    ref = librosa.filters.mel(sr=48000, n_fft=2048, n_mels=256).astype(np.float64)
    assert ours.shape == ref.shape == (256, 1025)
    # librosa stores float32, so ~1e-7 relative is the floor; atol only covers exact zeros
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-12)
    ours2 = mel_filterbank(16000, 512, 40, fmin=50, fmax=7000, dtype=torch.float64).numpy()
    ref2 = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, fmin=50, fmax=7000)
    np.testing.assert_allclose(ours2, ref2, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("in_hw,out_hw", [
    ((256, 215), (112, 112)), ((256, 130), (112, 112)), ((256, 224), (112, 112)),
    ((256, 112), (112, 112)), ((256, 111), (112, 112)), ((256, 36), (112, 112)),
    ((256, 14), (112, 112)), ((112, 112), (256, 46)), ((112, 112), (256, 200)),
    ((10, 13), (31, 40)), ((300, 301), (7, 5)),
])
@pytest.mark.numerics
def test_area_resize_equals_cv2(in_hw, out_hw):
    x = np.random.default_rng(sum(in_hw) + sum(out_hw)).random(in_hw, dtype=np.float32)
    ref = cv2.resize(x, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_AREA)
    got = area_resize(torch.from_numpy(x), out_hw).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-5


@pytest.mark.numerics
def test_parity_with_librosa_cv2_on_fsdd(fsdd_clips):
    frames = [1 + len(c) // 512 for c in fsdd_clips]
    assert min(frames) < 112 < max(frames)
    img, stats = wave_to_seed(fsdd_clips, SR)  # one padded batch of varied lengths
    assert img.shape == (len(fsdd_clips), 1, 112, 112)
    assert stats["frames"].tolist() == frames
    assert stats["lengths"].tolist() == [len(c) for c in fsdd_clips]
    worst = 0.0
    for i, y in enumerate(fsdd_clips):
        ref, S = reference_seed(y)
        worst = max(worst, float(np.abs(img[i, 0].numpy() - ref).max()))
        assert stats["ref_power"][i].item() == pytest.approx(float(S.max()), rel=1e-4)
        db = librosa.power_to_db(S, ref=np.max, amin=1e-10, top_db=80)
        assert stats["db_min"][i].item() == pytest.approx(float(db.min()), abs=1e-3)
        assert stats["db_max"][i].item() == pytest.approx(float(db.max()), abs=1e-3)
    assert worst < 1e-3, worst


@pytest.mark.numerics
def test_parity_synthetic_long_and_edge_lengths():
    lens = [3 * SR, 111 * 512, 111 * 512 + 511, 223 * 512 + 7, 5 * 512, 70000]
    clips = [_synthetic(n, i) for i, n in enumerate(lens)]
    img, stats = wave_to_seed(clips, SR)
    assert stats["frames"].tolist() == [1 + n // 512 for n in lens]  # includes 112 and 224
    for i, y in enumerate(clips):
        ref, _ = reference_seed(y)
        assert np.abs(img[i, 0].numpy() - ref).max() < 1e-3


@pytest.mark.numerics
def test_batched_equals_per_clip(fsdd_clips):
    clips = fsdd_clips[::3] + [_synthetic(2 * SR, 7)]
    img, stats = wave_to_seed(clips, SR)
    for i, y in enumerate(clips):
        one, st1 = wave_to_seed(y, SR)
        assert torch.allclose(img[i], one[0], atol=1e-5, rtol=0)
        for k in ("frames", "lengths"):
            assert stats[k][i] == st1[k][0]
        for k in ("db_min", "db_max", "ref_power"):
            assert torch.allclose(stats[k][i], st1[k][0], rtol=1e-5, atol=1e-6)
    # garbage past a clip's length must not leak into it
    mod = SeedFeatures()
    wave = torch.from_numpy(_synthetic(SR, 3))[None].repeat(2, 1)
    wave[1, 20000:] = 5.0
    out, st = mod(wave, torch.tensor([20000, 20000]))
    assert torch.equal(out[0], out[1]) and st["frames"].tolist() == [40, 40]
    assert float(wave[1, -1]) == 5.0  # the caller's tensor is left alone


@pytest.mark.numerics
def test_interleaved_lengths_equal_per_clip():
    # clips of equal frame counts that are not neighbours in the batch (an unsorted batch)
    clips = [_synthetic(n, i) for i, n in enumerate([20000, 30000, 20100, 30100, 9000])]
    img, stats = wave_to_seed(clips, SR)
    assert stats["frames"].tolist() == [40, 59, 40, 59, 18]
    for i, y in enumerate(clips):
        ref, _ = reference_seed(y)
        assert np.abs(img[i, 0].numpy() - ref).max() < 1e-3
        one, st1 = wave_to_seed(y, SR)
        assert torch.allclose(img[i], one[0], atol=1e-5, rtol=0)
        assert torch.allclose(stats["db_min"][i], st1["db_min"][0], rtol=1e-5, atol=1e-6)


def test_wave_to_seed_resamples_from_8k(fsdd_dir):
    path = fsdd_dir / "recordings" / "0_george_0.wav"
    y8, sr = audio.load_audio(path, mono=True)
    img, stats = wave_to_seed(y8[0], sr)
    ref, _ = reference_seed(audio.resample(y8[0], sr, SR))
    assert stats["lengths"][0] == len(y8[0]) * SR // sr
    assert np.abs(img[0, 0].numpy() - ref).max() < 1e-3


def test_silence_is_finite():
    img, stats = wave_to_seed([np.zeros(9000, np.float32)], SR)
    assert torch.isfinite(img).all() and float(img.abs().max()) == 0.0
    assert stats["ref_power"][0] == 0.0


def test_mel_power_inverse_shape_and_level(fsdd_clips):
    clips = fsdd_clips[::4]
    img, stats = wave_to_seed(clips, SR)
    mels = seed_to_mel_power(img, stats)
    mod = SeedFeatures()
    for i, (mel, y) in enumerate(zip(mels, clips)):
        assert mel.shape == (256, 1 + len(y) // 512)
        assert torch.isfinite(mel).all() and bool((mel > 0).all())
        true = mod.mel_power(torch.from_numpy(y)[None])[0]
        level_db = 10 * np.log10(mel.max().item() / stats["ref_power"][i].item())
        assert -6.0 < level_db <= 1e-4, level_db  # peak smoothed by the resize, never raised
        total_db = 10 * np.log10(mel.sum().item() / true.sum().item())
        assert abs(total_db) < 6.0, total_db  # overall energy in the right range


def test_mel_to_linear_and_phase_oracle(fsdd_clips):
    """Without the image bottleneck, pinv + the clean phase gives the clip back closely."""
    mod = SeedFeatures()
    for y in (fsdd_clips[3], fsdd_clips[-1]):
        lin = mel_power_to_linear(mod.mel_power(torch.from_numpy(y)[None])[0])
        assert lin.shape == (1025, 1 + len(y) // 512) and bool((lin >= 0).all())
        out = with_phase(lin.sqrt(), y).numpy()
        assert out.shape == y.shape
        assert _cosine(out, y) > 0.98


def test_seed_invert_noisy_phase_with_clean_phase(fsdd_clips):
    """The 256 -> 112 mel-axis shrink is lossy (harmonics are undersampled), so the clean
    clip's image with its own phase only partly comes back: cosine ~0.2-0.85 per clip."""
    clips = fsdd_clips[::2]
    img, stats = wave_to_seed(clips, SR)
    outs = seed_invert(img, stats, method="noisy-phase", noisy_wave=clips)
    cos = [_cosine(o, y) for o, y in zip(outs, clips)]
    for o, y in zip(outs, clips):
        assert o.shape == y.shape and o.dtype == np.float32 and np.isfinite(o).all()
    assert np.mean(cos) > 0.4, cos
    assert min(cos) > 0.1, cos
    # phase given at 8 kHz (resampled inside) agrees with phase given at 48 kHz
    y8 = audio.resample(clips[0], SR, 8000)
    o8 = seed_invert(img[:1], {k: v[:1] for k, v in stats.items()}, method="noisy-phase",
                     noisy_wave=[y8], noisy_sr=8000)[0]
    assert o8.shape == clips[0].shape and _cosine(o8, outs[0]) > 0.9


def test_seed_invert_griffinlim_seeded(fsdd_clips):
    clips = [fsdd_clips[0], fsdd_clips[10], fsdd_clips[-1]]
    img, stats = wave_to_seed(clips, SR)
    a = seed_invert(img, stats, method="griffinlim", n_iter=8, seed=0)
    b = seed_invert(img, stats, method="griffinlim", n_iter=8, seed=0)
    c = seed_invert(img, stats, method="griffinlim", n_iter=8, seed=1)
    for y, x, x2, x3 in zip(clips, a, b, c):
        assert x.shape == y.shape and np.isfinite(x).all() and np.abs(x).max() > 0
        assert np.array_equal(x, x2)
        assert not np.array_equal(x, x3)
    with pytest.raises(ValueError):
        seed_invert(img, stats, method="noisy-phase")


def test_griffin_lim_recovers_magnitude():
    y = _synthetic(SR // 2, 11)
    window = torch.hann_window(2048)
    spec = torch.stft(torch.from_numpy(y), 2048, 512, window=window, center=True,
                      pad_mode="constant", return_complex=True)
    mag = spec.abs()
    out = griffin_lim(mag, n_iter=32, length=len(y), seed=0)
    assert out.shape == (len(y),)
    re = torch.stft(out, 2048, 512, window=window, center=True, pad_mode="constant",
                    return_complex=True).abs()
    spectral_conv = float((re - mag).norm() / mag.norm())
    assert spectral_conv < 0.3, spectral_conv
