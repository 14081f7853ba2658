"""Waveform training losses."""

from __future__ import annotations

import pytest
import torch

import numpy as np

from digit_denoise.losses import compressed_spectrum, mrstft, neg_si_sdr, spec_sisdr, wave_loss


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
