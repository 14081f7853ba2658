"""Training losses for waveform models: SI-SDR, multi-resolution STFT magnitude, compressed spectra.

Every loss takes ``(estimate, clean)`` as ``Tensor[B, T]`` and returns a scalar to minimise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .metrics import si_sdr, si_sdr_loss

LOSSES = ("sisdr", "mrstft", "sisdr+mrstft", "spec+sisdr")
RESOLUTIONS = ((256, 64), (512, 128), (1024, 256))  # (n_fft, hop) at 16 kHz: 16, 32, 64 ms frames


def neg_si_sdr(est: Tensor, ref: Tensor) -> Tensor:
    """−SI-SDR in dB, averaged over the batch: :func:`metrics.si_sdr_loss` (the one SI-SDR; items with
    a silent reference are skipped)."""
    return si_sdr_loss(ref, est)


def _mag(x: Tensor, n_fft: int, hop: int) -> Tensor:
    win = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, window=win, return_complex=True)
    return spec.abs().clamp_min(1e-7)


def mrstft(est: Tensor, ref: Tensor) -> Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over resolutions."""
    total = est.new_zeros(())
    for n_fft, hop in RESOLUTIONS:
        e, r = _mag(est, n_fft, hop), _mag(ref, n_fft, hop)
        sc = torch.linalg.norm(r - e, dim=(-2, -1)) / torch.linalg.norm(r, dim=(-2, -1)).clamp_min(1e-7)
        total = total + sc.mean() + (e.log() - r.log()).abs().mean()
    return total / len(RESOLUTIONS)


def compressed_spectrum(est: Tensor, ref: Tensor, power: float = 0.3, n_fft: int = 512, hop: int = 128) -> Tensor:
    """MSE of power-law compressed spectra: 0.3 × complex (|X|^p with X's phase) + 0.7 × magnitude (|X|^p).

    Both signals are first divided by the reference's RMS (per clip), so the loss does not depend on the
    recording level; the STFT is orthonormally scaled (``normalized=True``).
    """
    scale = ref.pow(2).mean(-1, keepdim=True).clamp_min(1e-10).sqrt()
    win = torch.hann_window(n_fft, device=est.device, dtype=est.dtype).sqrt()
    e = torch.stft(est / scale, n_fft, hop, window=win, normalized=True, return_complex=True)
    r = torch.stft(ref / scale, n_fft, hop, window=win, normalized=True, return_complex=True)
    e_mag = (e.real.pow(2) + e.imag.pow(2) + 1e-8).sqrt()
    r_mag = (r.real.pow(2) + r.imag.pow(2) + 1e-8).sqrt()
    e_c, r_c = e / e_mag.pow(1 - power), r / r_mag.pow(1 - power)
    complex_mse = (e_c.real - r_c.real).pow(2).mean() + (e_c.imag - r_c.imag).pow(2).mean()
    mag_mse = (e_mag.pow(power) - r_mag.pow(power)).pow(2).mean()
    return 0.3 * complex_mse + 0.7 * mag_mse


def spec_sisdr(est: Tensor, ref: Tensor) -> Tensor:
    """``100 × compressed_spectrum + (−SI-SDR)``: the hybrid loss of GTCRN's training recipe (30/70/1)."""
    return 100 * compressed_spectrum(est, ref) + neg_si_sdr(est, ref)


def harm(est: Tensor, ref: Tensor, noisy: Tensor) -> Tensor:
    """Mean over the batch of ``max(0, SI-SDR(noisy) − SI-SDR(est))`` in dB: what the estimate loses
    against doing nothing. Zero (no gradient) for every clip the model improves; items with a silent
    reference are skipped, as in :func:`neg_si_sdr`."""
    lost = torch.relu(si_sdr(ref, noisy).detach() - si_sdr(ref, est))
    ok = ~torch.isnan(lost)
    return torch.where(ok, lost, torch.zeros_like(lost)).sum() / ok.sum().clamp_min(1)


def guarded(loss, no_harm: float = 0.0, teacher=None, no_regress: float = 0.0):
    """``loss(est, ref)`` as ``f(est, ref, noisy)``, plus two optional per-clip guards (in dB):

    - ``no_harm × harm(est, ref, noisy)``: clips the model makes worse than its input (babble it cannot
      separate) weigh more, so that where it cannot help it learns to pass the input through;
    - ``no_regress × harm(est, ref, teacher(noisy))``: clips on which it falls below ``teacher`` (the
      model a fine-tune starts from, frozen) weigh more, so that a fine-tune trades less of what the
      teacher did well for what it gains elsewhere.
    """
    def total(est: Tensor, ref: Tensor, noisy: Tensor) -> Tensor:
        value = loss(est, ref)
        if no_harm > 0:
            value = value + no_harm * harm(est, ref, noisy)
        if no_regress > 0:
            with torch.no_grad():
                base = teacher(noisy)
            value = value + no_regress * harm(est, ref, base)
        return value

    return total


def wave_loss(name: str):
    """The loss function called ``name`` (one of :data:`LOSSES`)."""
    if name == "sisdr":
        return neg_si_sdr
    if name == "mrstft":
        return mrstft
    if name == "sisdr+mrstft":
        return lambda est, ref: neg_si_sdr(est, ref) / 20 + mrstft(est, ref)
    if name == "spec+sisdr":
        return spec_sisdr
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
