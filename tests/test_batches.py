"""On-the-fly waveform batches: EQ augmentation, SNR focus, babble talker counts, option parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digit_denoise.data.batches import (
    ClipAugment,
    ClipBank,
    generator,
    make_batch,
    peaking_eq,
)
from digit_denoise.errors import UserError
from digit_denoise.training.config import resolve_config
from digit_denoise.training.inputs import wave_batch_config


def batch_cfg(**kw):
    """The batch settings of a run with these options (every default comes from TrainConfig)."""
    return wave_batch_config(resolve_config("fast", **kw), 16000)


def test_peaking_eq_hits_its_gain_and_leaves_zero_gain_alone():
    x = torch.randn(3, 32000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(peaking_eq(x, 3, 0.0, 16000, generator("eq", 0)), x, atol=1e-5)
    y = peaking_eq(x, 1, 15.0, 16000, generator("eq", 1))
    ratio_db = 10 * torch.log10(torch.fft.rfft(y).abs().pow(2) / torch.fft.rfft(x).abs().pow(2))
    peak = ratio_db.abs().amax(-1)
    assert bool((peak <= 15.0 + 0.1).all()) and float(peak.max()) > 3.0  # within ±15 dB, and it does something
    assert float(ratio_db[:, -10:].abs().max()) < 1.0  # a peaking filter leaves far-away bands alone


def test_clip_augment_changes_voice_and_mic_as_a_pure_function_of_its_rng():
    x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    aug = ClipAugment(speed=(0.8, 1.25), eq_db=10.0)
    outs = [aug(x, 16000, np.random.default_rng(k)) for k in range(8)]
    assert all(o.dtype == np.float32 and np.isfinite(o).all() for o in outs)
    lengths = {o.size for o in outs}
    assert len(lengths) > 1 and all(12800 - 2 <= n <= 20000 + 2 for n in lengths)  # T / factor
    assert np.array_equal(aug(x, 16000, np.random.default_rng(3)), outs[3])
    # the pitch moves with the speed: the sine's peak frequency is 440 × factor
    o = outs[0]
    factor = x.size / o.size
    peak_hz = np.argmax(np.abs(np.fft.rfft(o))) * 16000 / o.size
    assert abs(peak_hz - 440 * factor) < 3.0
    # no speed change, no EQ: only a tilt (a few dB at 440 Hz, the length kept)
    still = ClipAugment(speed=(1.0, 1.0))(x, 16000, np.random.default_rng(0))
    assert still.size == x.size and 0.2 < np.std(still) / np.std(x) < 5


def test_snr_focus_draws_its_share_from_the_focus_range():
    rng = np.random.default_rng(0)
    bank = ClipBank([rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(64)], ["a"] * 64)
    cfg = batch_cfg(snr=(5.0, 10.0), noise="white", snr_focus=(-12.0, -4.0, 0.75))
    noisy, clean = make_batch(bank, torch.arange(64), cfg, generator("f", 0), {}, False)
    snr = 10 * torch.log10(clean.pow(2).sum(-1) / (noisy - clean).pow(2).sum(-1))
    low = (snr < -3.9).float().mean()
    assert bool(((snr > -12.2) & (snr < 10.2)).all()) and 0.55 < float(low) < 0.95
    assert not bool(((snr > -3.8) & (snr < 4.8)).any())  # nothing between the two ranges


def test_babble_uses_the_configured_talker_counts():
    # each clip is a constant of its own level: babble of k unit-power talkers has a known sample set
    bank = ClipBank([np.full(16000, i + 1.0, np.float32) for i in range(10)], [str(i) for i in range(10)])
    for talkers in ((1, 1), (2, 8)):
        cfg = batch_cfg(snr=(0.0, 0.0), noise="babble", babble_talkers=talkers)
        noisy, clean = make_batch(bank, torch.arange(4), cfg, generator("b", 0), {}, False)
        assert noisy.shape == (4, 16000) and torch.isfinite(noisy).all()


def test_the_batch_settings_are_the_run_config_s():
    cfg = batch_cfg(snr="-12:8", snr_focus="-12:-4@0.7", babble_talkers="2:6", speed="0.9:1.1", eq_db=15)
    assert (cfg.snr, cfg.snr_focus, cfg.babble_talkers, cfg.speed, cfg.eq_db) == (
        (-12.0, 8.0), (-12.0, -4.0, 0.7), (2, 6), (0.9, 1.1), 15.0)
    assert batch_cfg(noise="white,texture").kinds == ("white", "texture")
    with pytest.raises(UserError, match="--noise 'hum'"):
        batch_cfg(noise="white,hum")


def test_batches_are_pure_functions_of_their_keys_and_hit_the_snr():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 9000, 20000, 16000)]
    bank = ClipBank(waves, ["a", "b", "a", "c"])
    cfg = batch_cfg(snr=(5.0, 5.0), noise="white,babble,colored", augment=False)
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
