"""Waveform training losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digit_denoise.losses import compressed_spectrum, guarded, harm, mrstft, neg_si_sdr, spec_sisdr, wave_loss


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_compressed_spectrum_is_zero_for_the_target_and_level_invariant():
    c = _x(3, 8000)
    noisy = c + 0.5 * _x(3, 8000, seed=1)
    assert float(compressed_spectrum(c, c)) < 1e-10 < float(compressed_spectrum(noisy, c))
    # the same mistake at another recording level costs the same
    assert float(compressed_spectrum(0.01 * noisy, 0.01 * c)) == pytest.approx(float(compressed_spectrum(noisy, c)),
                                                                                rel=1e-3)
    # less noise, lower loss; the wrong sign (phase) costs too, the magnitude term alone would not see it
    assert float(compressed_spectrum(c + 0.1 * _x(3, 8000, seed=1), c)) < float(compressed_spectrum(noisy, c))
    assert float(compressed_spectrum(-c, c)) > 0.1


def test_spec_sisdr_combines_both_and_has_finite_gradients():
    c = _x(2, 8000)
    est = (c + 0.3 * _x(2, 8000, seed=2)).requires_grad_()
    value = spec_sisdr(est, c)
    expected = 100 * compressed_spectrum(est, c) + neg_si_sdr(est, c)
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    value.backward()
    assert torch.isfinite(est.grad).all()
    silent = torch.zeros(1, 4000, requires_grad=True)  # a silent estimate: no NaN gradients
    spec_sisdr(silent, _x(1, 4000)).backward()
    assert torch.isfinite(silent.grad).all()
    assert wave_loss("spec+sisdr") is spec_sisdr


def test_wave_losses():
    c = _x(4, 8000)
    assert float(neg_si_sdr(c, c)) < -60  # perfect: very high SI-SDR
    assert float(neg_si_sdr(3 * c, c)) < -60  # scale-invariant
    noisy = c + 0.5 * _x(4, 8000, seed=3)
    assert float(neg_si_sdr(noisy, c)) == pytest.approx(-10 * np.log10(1 / 0.25), abs=0.3)
    assert float(mrstft(c, c)) < 1e-5 < float(mrstft(noisy, c))
    assert float(wave_loss("sisdr+mrstft")(noisy, c)) > float(wave_loss("sisdr+mrstft")(c, c))
    with pytest.raises(ValueError):
        wave_loss("l1")


def test_harm_counts_only_what_a_clip_loses_against_its_input():
    c = _x(3, 8000)
    noisy = c + _x(3, 8000, seed=1)  # ~0 dB
    assert float(harm(c, c, noisy)) == 0.0  # every clip improved: no penalty
    worse = c + 3 * _x(3, 8000, seed=2)  # ~−9.5 dB: ~9.5 dB lost on each clip
    assert float(harm(worse, c, noisy)) == pytest.approx(9.5, abs=0.5)
    mixed = torch.stack([c[0], worse[1], worse[2]])  # one improved, two lost → the mean over all three
    assert float(harm(mixed, c, noisy)) == pytest.approx(float(harm(worse[1:], c[1:], noisy[1:])) * 2 / 3, rel=1e-5)
    silent = torch.zeros_like(c).index_copy(0, torch.tensor([1, 2]), c[1:])  # clip 0's reference silent
    assert torch.isfinite(harm(worse, silent, noisy))
    est = worse.clone().requires_grad_(True)
    loss = guarded(neg_si_sdr, 2.0)(est, c, noisy)
    assert float(loss.detach()) == pytest.approx(float(neg_si_sdr(worse, c)) + 2 * float(harm(worse, c, noisy)), rel=1e-5)
    loss.backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    assert float(guarded(neg_si_sdr)(worse, c, noisy)) == float(neg_si_sdr(worse, c))  # 0 = off


def test_no_regress_guard_measures_against_the_teacher_output():
    c = _x(3, 8000)
    noisy = c + _x(3, 8000, seed=1)
    worse = c + 3 * _x(3, 8000, seed=2)
    as_input = guarded(neg_si_sdr, teacher=lambda n: n, no_regress=1.5)  # a teacher that passes the input through
    assert float(as_input(worse, c, noisy)) == pytest.approx(float(guarded(neg_si_sdr, 1.5)(worse, c, noisy)), rel=1e-6)
    better_teacher = guarded(neg_si_sdr, teacher=lambda n: c + 0.1 * (n - c), no_regress=1.0)  # ~20 dB
    assert float(better_teacher(noisy, c, noisy)) == pytest.approx(float(neg_si_sdr(noisy, c)) + 20, abs=0.5)
    assert float(better_teacher(c, c, noisy)) == float(neg_si_sdr(c, c))  # better than the teacher: no penalty
