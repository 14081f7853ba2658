"""noise.py: deterministic RNG, coloured noise spectra, SNR accuracy, parsing, noise folders."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import welch

from digit_denoise.data.noise import (
    TRAINING_KINDS,
    NoiseConfig,
    NoiseFolder,
    babble,
    clip_rng,
    colored_noise,
    loop_crop,
    measured_snr,
    mix_at_snr,
    noise_signal,
    parse_kinds,
    parse_snr,
    texture_noise,
)
from digit_denoise.errors import UserError


def tone(sr: int = 8000, dur: float = 0.3, f0: float = 180.0) -> np.ndarray:
    t = np.arange(int(sr * dur)) / sr
    return (0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))).astype(np.float32)


# --------------------------------------------------------------------------------- clip_rng
def test_clip_rng_is_a_pure_function():
    a = clip_rng(0, "01/3_01_2", "noise").standard_normal(8)
    b = clip_rng(0, "01/3_01_2", "noise").standard_normal(8)
    assert np.array_equal(a, b)
    # numpy ints / strings of the seed name the same stream
    assert np.array_equal(a, clip_rng(np.int64(0), "01/3_01_2", "noise").standard_normal(8))
    others = [clip_rng(1, "01/3_01_2", "noise"), clip_rng(0, "01/3_01_3", "noise"),
              clip_rng(0, "01/3_01_2", "noise", "epoch1"), clip_rng(0, "01/3_01_2"),
              clip_rng(0, "01/3_01_2", "noise-recipe")]
    draws = [g.standard_normal(8) for g in others]
    for d in draws:
        assert not np.array_equal(a, d)
    assert len({d.tobytes() for d in draws}) == len(draws)
    # a separator is used: ("a", "bc") != ("ab", "c")
    assert not np.array_equal(clip_rng(0, "a", "bc").random(4), clip_rng(0, "ab", "c").random(4))


# ------------------------------------------------------------------------------ colour
def _slope_db_per_octave(x: np.ndarray, sr: int = 16000) -> float:
    f, p = welch(x, fs=sr, nperseg=2048)
    band = (f >= 100) & (f <= 4000)
    return float(np.polyfit(np.log2(f[band]), 10 * np.log10(p[band]), 1)[0])


@pytest.mark.parametrize("kind,lo,hi", [("white", -0.5, 0.5), ("pink", -3.6, -2.4), ("brown", -6.6, -5.4)])
def test_colored_noise_spectral_slope(kind, lo, hi):
    x = noise_signal(kind, 16000 * 8, clip_rng(3, "spec", kind), sr=16000)
    assert x.dtype == np.float32 and x.shape == (16000 * 8,)
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    assert abs(float(np.mean(x))) < 0.05  # DC removed (brown has no random-walk drift)
    assert lo < _slope_db_per_octave(x) < hi


def test_colored_noise_edge_cases():
    assert colored_noise(1.0, 0, clip_rng(0, "x")).shape == (0,)
    assert colored_noise(2.0, 1, clip_rng(0, "x")).shape == (1,)
    assert colored_noise(2.0, 7, clip_rng(0, "x")).shape == (7,)
    with pytest.raises(ValueError):
        noise_signal("purple", 10, clip_rng(0, "x"), sr=8000)
    a = noise_signal("pink", 500, clip_rng(0, "x"), sr=8000)
    assert np.array_equal(a, noise_signal("pink", 500, clip_rng(0, "x"), sr=8000))


def test_coloured_power_stays_in_the_audible_band():
    """Below 40 Hz every colour is flat: brown noise is not a sub-audio rumble of nominal power."""
    for kind in ("pink", "brown"):
        x = noise_signal(kind, 16000 * 4, clip_rng(1, "band", kind), sr=16000)
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / 16000)
        # unfloored 1/f and 1/f² would put ~41 % and ~98 % of the power below 40 Hz
        assert spec[f < 40].sum() / spec.sum() < (0.2 if kind == "pink" else 0.6)


def test_training_batches_and_evaluation_pairs_share_one_noise_implementation():
    """The same kind from the same generator state is the same signal, whoever asks for it."""
    from digit_denoise.data import batches, pairs

    assert batches.noise_signal is noise_signal is pairs.noise_signal
    rng_a, rng_b = clip_rng(0, "c", "colored"), clip_rng(0, "c", "colored")
    a = noise_signal("colored", 4000, rng_a, sr=16000)
    b = noise_signal("colored", 4000, rng_b, sr=16000)
    assert np.array_equal(a, b) and abs(float(np.sqrt(np.mean(a.astype(np.float64) ** 2))) - 1) < 1e-4


# --------------------------------------------------------------------------------- SNR
@pytest.mark.parametrize("snr", [-8.0, 0.0, 5.0])
@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
def test_mix_at_snr_is_accurate(kind, snr):
    clean = tone()
    rng = clip_rng(0, "snr", kind, snr)
    if kind == "babble":
        noise = babble([tone(f0=f) for f in (120, 150, 210)], clean.size, rng)
    else:
        noise = noise_signal(kind, clean.size, rng, sr=8000)
    noisy, scaled = mix_at_snr(clean, noise, snr)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert abs(measured_snr(clean, noisy) - snr) < 0.1
    assert np.allclose(noisy - clean, scaled, atol=1e-6)


def test_mix_at_snr_silent_and_shape_mismatch():
    z = np.zeros(100, np.float32)
    noisy, scaled = mix_at_snr(z, np.ones(100, np.float32), 0.0)
    assert not noisy.any() and not scaled.any()
    with pytest.raises(ValueError):
        mix_at_snr(z, np.ones(99, np.float32), 0.0)


# ------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("text,choices,rng", [
    (-8, (-8.0,), None), (5.5, (5.5,), None), ("-8", (-8.0,), None), ("-8,-5,0", (-8.0, -5.0, 0.0), None),
    (" -8, -5 ,0 ", (-8.0, -5.0, 0.0), None), ("-10:10", (), (-10.0, 10.0)), ("-10..10", (), (-10.0, 10.0)),
    ("10:-10", (), (-10.0, 10.0)), ("-2.5 .. 7.5", (), (-2.5, 7.5)), ([0, "5"], (0.0, 5.0), None)])
def test_parse_snr_forms(text, choices, rng):
    assert parse_snr(text) == (choices, rng)


@pytest.mark.parametrize("bad", ["", "abc", "loud", "-8;-5", "1:2:3", ",", "nan", "inf", "-10:x", ["a"]])
def test_parse_snr_garbage_is_user_error(bad):
    with pytest.raises(UserError) as ei:
        parse_snr(bad)
    assert "\n" not in str(ei.value)


def test_noise_config_parse_and_draw(tmp_path):
    cfg = NoiseConfig.parse("white, pink,brown", "-8,-5,0", babble_talkers=3)
    assert cfg.kinds == ("white", "pink", "brown") and cfg.snr == (-8.0, -5.0, 0.0) and cfg.babble_talkers == 3
    draws = [cfg.draw(clip_rng(0, f"c{i}")) for i in range(300)]
    assert {k for k, _ in draws} == {"white", "pink", "brown"}
    assert {s for _, s in draws} == {-8.0, -5.0, 0.0}
    assert draws[0] == cfg.draw(clip_rng(0, "c0"))
    r = NoiseConfig.parse("white", "-10:10")
    vals = [r.draw(clip_rng(0, f"c{i}"))[1] for i in range(200)]
    assert all(-10 <= v <= 10 for v in vals) and len(set(vals)) > 150
    assert "white" in r.describe() and "-10..10 dB" in r.describe()

    folder = tmp_path / "noises"
    folder.mkdir()
    sf.write(folder / "hum.wav", tone(), 8000)
    c = NoiseConfig.parse(["babble", str(folder)], -5)
    assert c.kinds == ("babble", str(folder)) and c.snr == (-5.0,)
    assert "noises" in c.describe()
    for bad in ("", "purple", str(tmp_path / "nope"), "white,,"):
        if bad == "white,,":
            assert NoiseConfig.parse(bad).kinds == ("white",)
            continue
        with pytest.raises(UserError):
            NoiseConfig.parse(bad)
    with pytest.raises(UserError):
        NoiseConfig.parse("white", "garbage")
    with pytest.raises(UserError, match="babble-talkers"):
        NoiseConfig.parse("babble", -8, babble_talkers=0)


# ----------------------------------------------------------------------------- folders
def test_loop_crop_loops_short_noise():
    x = np.arange(10, dtype=np.float32)
    y = loop_crop(x, 95, clip_rng(0, "loop"))
    assert y.shape == (95,)
    assert np.array_equal(y[10:], y[:-10])  # periodic with the source length
    assert set(np.unique(y)) == set(x)
    assert loop_crop(np.zeros(0, np.float32), 5, clip_rng(0, "l")).shape == (5,)
    # every offset is possible and within range
    starts = {int(loop_crop(x, 3, clip_rng(0, f"o{i}"))[0]) for i in range(200)}
    assert starts == set(range(10))


def test_noise_folder_loops_and_crops(tmp_path):
    folder = tmp_path / "noise"
    (folder / "sub").mkdir(parents=True)
    short = (clip_rng(0, "n").standard_normal(400) * 0.1).astype(np.float32)  # 25 ms at 16 kHz
    sf.write(folder / "sub" / "short.wav", short, 16000, subtype="FLOAT")
    sf.write(folder / "silent.wav", np.zeros(800, np.float32), 16000)
    (folder / "readme.txt").write_text("not noise")
    nf = NoiseFolder.load(folder, 16000)
    assert len(nf.clips) == 1  # the silent file is skipped
    n = 16000  # 1 s clip from a 25 ms noise file
    y = nf.sample(n, clip_rng(0, "clip"))
    assert y.shape == (n,) and y.dtype == np.float32
    assert np.sqrt(np.mean(y.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    assert np.allclose(y[400:], y[:-400], atol=1e-6)
    # it is the recording (scaled), not something else
    scale = np.sqrt(np.mean(short.astype(np.float64) ** 2))
    k = int(np.argmin([np.abs(np.roll(short, -s)[:50] / scale - y[:50]).max() for s in range(400)]))
    assert np.allclose(np.roll(short, -k) / scale, y[:400], atol=1e-5)
    # resampled on load: 8 kHz folder read at 16 kHz
    f8 = tmp_path / "n8"
    f8.mkdir()
    sf.write(f8 / "a.wav", short, 8000, subtype="FLOAT")
    assert NoiseFolder.load(f8, 16000).clips[0].size == 800


def test_noise_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no noise files"):
        NoiseFolder.load(tmp_path, 8000)
    sf.write(tmp_path / "z.wav", np.zeros(100, np.float32), 8000)
    with pytest.raises(UserError, match="silent"):
        NoiseFolder.load(tmp_path, 8000)


def test_babble_is_unit_rms_and_needs_sources():
    out = babble([tone(f0=100), tone(f0=130, dur=0.1)], 5000, clip_rng(0, "b"))
    assert out.shape == (5000,) and np.sqrt(np.mean(out.astype(np.float64) ** 2)) == pytest.approx(1, rel=1e-4)
    with pytest.raises(ValueError):
        babble([], 10, clip_rng(0, "b"))


def test_noise_folder_splits_into_seen_and_unseen(tmp_path):
    import soundfile as sf

    from digit_denoise.data.noise import NoiseConfig, NoiseFolder, is_noise_folder, noise_files, noise_label

    for i in range(10):
        sf.write(str(tmp_path / f"n{i}.flac"), np.full(800, 0.1 * (i + 1), np.float32), 8000)
    every = {f.name for f in noise_files(str(tmp_path))}
    seen = {f.name for f in noise_files(f"{tmp_path}:seen")}
    unseen = {f.name for f in noise_files(f"{tmp_path}:unseen")}
    assert len(every) == 10 and len(unseen) == 3 and seen | unseen == every and not seen & unseen
    assert unseen == {f.name for f in noise_files(f"{tmp_path}:unseen")}  # the same files every time
    assert is_noise_folder(f"{tmp_path}:unseen") and not is_noise_folder(f"{tmp_path}:other")
    assert noise_label(f"{tmp_path}:unseen") == f"{tmp_path.name}:unseen" and noise_label("pink") == "pink"
    assert len(NoiseFolder.load(f"{tmp_path}:unseen", 8000).clips) == 3
    assert NoiseConfig.parse(f"white,{tmp_path}:seen").kinds[1].endswith(":seen")
    with pytest.raises(UserError):
        NoiseConfig.parse(f"{tmp_path}:others")


def test_texture_noise_is_unit_rms_seeded_and_not_stationary():
    xs = [texture_noise(16000, clip_rng(0, f"t{k}"), 16000) for k in range(24)]
    assert all(x.dtype == np.float32 and x.shape == (16000,) and np.isfinite(x).all() for x in xs)
    assert all(abs(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) - 1) < 1e-3 for x in xs)
    assert np.array_equal(texture_noise(16000, clip_rng(0, "t3"), 16000), xs[3])
    assert not np.array_equal(xs[0], xs[1])

    def frame_spread(x):  # how much the level moves between 32 ms frames, in dB
        e = 10 * np.log10(np.mean(x[: 16000 // 512 * 512].reshape(-1, 512).astype(np.float64) ** 2, 1) + 1e-12)
        return np.percentile(e, 90) - np.percentile(e, 10)

    white = colored_noise(0.0, 16000, clip_rng(0, "w"), 16000)
    assert np.median([frame_spread(x) for x in xs]) > 3 * frame_spread(white)
    # spectra differ from draw to draw (not one colour): the share of power below 1 kHz varies widely
    low = [np.sum(np.abs(np.fft.rfft(x)[:1000]) ** 2) / np.sum(np.abs(np.fft.rfft(x)) ** 2) for x in xs]
    assert max(low) - min(low) > 0.5
    assert texture_noise(0, clip_rng(0, "e"), 16000).size == 0
    # a training kind that noise_signal makes, not one a manifest or an evaluation grid may name
    assert np.array_equal(noise_signal("texture", 16000, clip_rng(0, "t3"), sr=16000), xs[3])
    assert "texture" in parse_kinds("white,texture", TRAINING_KINDS)
    with pytest.raises(UserError):
        NoiseConfig.parse("texture", "0")
