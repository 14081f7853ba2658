"""Back from the seed representation to audio: mel power, linear magnitude, phase (noisy or Griffin-Lim).

The inverse of :mod:`.features`' image: ``seed_to_mel_power`` (the [0, 1] image → mel power at the
clip's own frame count and level), ``mel_power_to_linear`` (pseudo-inverse of the mel filterbank),
then ``with_phase`` (the noisy input's phase) or ``griffin_lim``; ``seed_invert`` does all of it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .. import audio
from ..mel import mel_filterbank
from .features import SeedFeatureConfig, _as_clip_list, area_resize

# --------------------------------------------------------------------------------------------
# inverse


def seed_to_mel_power(img: torch.Tensor, stats: dict, cfg: SeedFeatureConfig | None = None
                      ) -> list[torch.Tensor]:
    """Seed images back to absolute mel power: ``Tensor[B, 1, H, W] -> [Tensor[n_mels, frames_i]]``.

    Per clip ``i``:
      1. resize the ``H x W`` image back to ``(n_mels, frames_i)`` with the same cv2
         ``INTER_AREA``-equivalent rule as the forward pass (it grows along the mel axis, so this is
         OpenCV's 2-tap linear area rule; detail lost by the forward shrink is not recovered);
      2. ``v`` in [0, 1] -> dB relative to the clip's max: ``dB = db_min + v * (db_max - db_min)``
         (``db_max`` is 0 dB for any non-silent clip, ``db_min`` >= ``-top_db``); values are
         clamped to [0, 1] first;
      3. dB -> absolute power: ``power = ref_power * 10 ** (dB / 10)``, where ``ref_power`` is
         the clip's max mel power measured in the forward pass.
    So a pixel of 1 maps to ``ref_power`` and a pixel of 0 to ``ref_power * 10**(db_min / 10)``
    (at most ``top_db`` below). A model's output image inherits the *input* clip's stats.
    """
    cfg = cfg or SeedFeatureConfig()
    if img.dim() == 3:
        img = img[:, None]
    out = []
    for i in range(img.shape[0]):
        n = int(stats["frames"][i])
        v = area_resize(img[i, 0].clamp(0.0, 1.0), (cfg.n_mels, n))
        lo = stats["db_min"][i].to(v)
        hi = stats["db_max"][i].to(v)
        db = lo + v * (hi - lo)
        out.append(stats["ref_power"][i].to(v) * torch.pow(10.0, db / 10.0))
    return out


@lru_cache(maxsize=8)
def _mel_pinv(sr: int, n_fft: int, n_mels: int) -> torch.Tensor:
    fb = mel_filterbank(sr, n_fft, n_mels, dtype=torch.float64)
    return torch.linalg.pinv(fb)


def mel_power_to_linear(mel_power: torch.Tensor, cfg: SeedFeatureConfig | None = None,
                        n_nnls: int = 0) -> torch.Tensor:
    """Mel power ``Tensor[..., n_mels, T]`` -> linear power ``Tensor[..., n_fft // 2 + 1, T]``.

    Minimum-norm least squares through the filterbank's pseudo-inverse (float64), clamped to
    ``>= 0``. ``n_nnls > 0`` refines with that many projected multiplicative (NNLS-style)
    updates ``S <- S * (M^T y) / (M^T M S)`` that keep ``S >= 0`` and lower ``||M S - y||``.
    """
    cfg = cfg or SeedFeatureConfig()
    pinv = _mel_pinv(cfg.sample_rate, cfg.n_fft, cfg.n_mels).to(mel_power.device)
    y = mel_power.to(torch.float64)
    s = (pinv @ y).clamp_min(0.0)
    if n_nnls > 0:
        m = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, dtype=torch.float64).to(y.device)
        mty = m.T @ y.clamp_min(0.0)
        s = s + 1e-12 * float(y.abs().max().clamp_min(1e-30))
        for _ in range(n_nnls):
            s = s * mty / (m.T @ (m @ s)).clamp_min(1e-30)
    return s.to(mel_power.dtype)


def _stft(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                      pad_mode="constant", return_complex=True)


def _istft(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int | None
           ) -> torch.Tensor:
    return torch.istft(spec, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                       length=length)


def griffin_lim(mag: torch.Tensor, n_iter: int = 32, hop: int = 512, n_fft: int = 2048,
                length: int | None = None, seed: int = 0, momentum: float = 0.99) -> torch.Tensor:
    """Fast Griffin-Lim (librosa's algorithm): magnitude ``Tensor[..., F, T]`` -> ``Tensor[..., N]``.

    Random initial phase from ``torch.Generator().manual_seed(seed)`` (same seed -> same output),
    then ``n_iter`` rounds of istft/stft with the momentum step
    ``angles = rebuilt - momentum / (1 + momentum) * previous`` (normalised to unit modulus).
    ``length`` defaults to ``hop * (T - 1)`` samples (centre=True framing).
    """
    mag = mag.to(torch.float32) if not mag.is_floating_point() else mag
    window = torch.hann_window(n_fft, periodic=True, dtype=mag.dtype, device=mag.device)
    if length is None:
        length = hop * (mag.shape[-1] - 1)
    gen = torch.Generator().manual_seed(int(seed))
    phase = torch.rand(mag.shape, generator=gen, dtype=torch.float64) * (2 * math.pi)
    angles = torch.polar(torch.ones_like(phase), phase).to(
        torch.complex64 if mag.dtype == torch.float32 else torch.complex128).to(mag.device)
    eps = 1e-16
    rebuilt = torch.zeros_like(angles)
    for _ in range(n_iter):
        tprev = rebuilt
        inverse = _istft(mag * angles, n_fft, hop, window, length)
        rebuilt = _stft(inverse, n_fft, hop, window)
        angles = rebuilt - (momentum / (1.0 + momentum)) * tprev
        angles = angles / (angles.abs() + eps)
    return _istft(mag * angles, n_fft, hop, window, length)


def with_phase(mag: torch.Tensor, phase_source_wave, n_fft: int = 2048, hop: int = 512,
               length: int | None = None) -> torch.Tensor:
    """Magnitude ``Tensor[F, T]`` + the STFT phase of ``phase_source_wave`` (``[N]``, same rate
    and framing) -> waveform ``Tensor[length]`` (default ``N``). Frames are cropped or
    zero-padded to agree if the counts differ."""
    src = torch.as_tensor(np.asarray(phase_source_wave) if not isinstance(phase_source_wave,
                          torch.Tensor) else phase_source_wave).to(mag.dtype).to(mag.device)
    src = src.reshape(-1)
    window = torch.hann_window(n_fft, periodic=True, dtype=mag.dtype, device=mag.device)
    spec = _stft(src, n_fft, hop, window)
    t = mag.shape[-1]
    if spec.shape[-1] < t:
        spec = torch.nn.functional.pad(spec, (0, t - spec.shape[-1]))
    spec = spec[..., :t]
    unit = torch.where(spec.abs() > 0, spec / spec.abs().clamp_min(1e-30),
                       torch.ones((), dtype=spec.dtype, device=spec.device))
    if length is None:
        length = src.shape[-1]
    return _istft(mag * unit, n_fft, hop, window, length)


def seed_invert(img: torch.Tensor, stats: dict, *, method: str = "griffinlim",
                noisy_wave=None, noisy_sr: int | None = None, n_iter: int = 32, seed: int = 0,
                cfg: SeedFeatureConfig | None = None) -> list[np.ndarray]:
    """Seed images -> 48 kHz float32 waveforms, one per clip, each of its original length.

    image -> :func:`seed_to_mel_power` -> :func:`mel_power_to_linear` -> magnitude
    ``sqrt(power)`` -> phase from ``method``:
      * ``"griffinlim"``: :func:`griffin_lim` with ``n_iter`` and ``seed``;
      * ``"noisy-phase"``: :func:`with_phase` with the phase of ``noisy_wave`` (a list of clips or
        a ``[B, T]`` batch, at ``noisy_sr`` Hz, default ``cfg.sample_rate``; resampled if needed).
    """
    cfg = cfg or SeedFeatureConfig()
    if method not in ("griffinlim", "noisy-phase"):
        raise ValueError(f"method must be 'griffinlim' or 'noisy-phase', got {method!r}")
    noisy = None
    if method == "noisy-phase":
        if noisy_wave is None:
            raise ValueError("method='noisy-phase' needs noisy_wave")
        noisy = _as_clip_list(noisy_wave)
        if noisy_sr is not None and int(noisy_sr) != cfg.sample_rate:
            noisy = [audio.resample(c, int(noisy_sr), cfg.sample_rate) for c in noisy]
        if len(noisy) != img.shape[0]:
            raise ValueError(f"noisy_wave has {len(noisy)} clips, img has {img.shape[0]}")
    outs = []
    with torch.no_grad():
        mels = seed_to_mel_power(img.detach().cpu().float(), stats, cfg)
        for i, mel in enumerate(mels):
            n = int(stats["lengths"][i])
            mag = mel_power_to_linear(mel, cfg).clamp_min(0.0).sqrt()
            if method == "griffinlim":
                y = griffin_lim(mag, n_iter=n_iter, hop=cfg.hop, n_fft=cfg.n_fft, length=n,
                                seed=seed)
            else:
                y = with_phase(mag, noisy[i], n_fft=cfg.n_fft, hop=cfg.hop, length=n)
            outs.append(y.cpu().numpy().astype(np.float32))
    return outs
