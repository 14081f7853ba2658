"""``Denoiser``: a trained model behind one call, ``enhance(audio, sample_rate)``.

>>> from digit_denoise import Denoiser                       # doctest: +SKIP
>>> den = Denoiser.from_checkpoint("runs/seed")              # doctest: +SKIP
>>> clean = den.enhance(noisy_array, 8000)                   # doctest: +SKIP

Seed-representation models: audio → 48 kHz → 112×112 image → model → image → mel power at the
clip's own frame count and absolute level (see :func:`features.seed_to_mel_power`) → linear
magnitude → waveform with the noisy input's phase (default; much better SI-SDR) or Griffin-Lim →
back to the input's rate and length. Every channel is denoised on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio, resample
from .checkpoint import load_model
from .errors import UserError
from .features import SeedFeatureConfig, seed_invert, wave_to_seed

PHASES = ("noisy", "griffinlim")


def clean_level_stats(stats: dict, feat: SeedFeatureConfig) -> dict:
    """How a predicted [0, 1] image is mapped back to absolute levels.

    The model predicts the *clean* clip's normalised image. Clean clips span the full floor:
    measured on FSDD test clips, every clean image's dB range is exactly [-top_db, 0] = [-80, 0]
    (the floor of ``power_to_db``), while noisy images span only about [-63, 0]. So a predicted
    value v maps to ``dB = -top_db·(1 - v)`` relative to the reference power, and the reference
    (the clip's peak mel power) is the noisy input's (median 0.9 dB above the clean peak at -8 dB).
    """
    out = dict(stats)
    out["db_min"] = torch.full_like(torch.as_tensor(stats["db_min"], dtype=torch.float32), -feat.top_db)
    out["db_max"] = torch.zeros_like(out["db_min"])
    return out


class Denoiser:
    """A loaded model plus everything needed to turn audio into denoised audio."""

    def __init__(self, model: torch.nn.Module, meta: dict, *, phase: str = "noisy", gl_iters: int = 32,
                 seed: int = 0):
        if phase not in PHASES:
            raise UserError(f"--phase {phase!r}: choose one of {', '.join(PHASES)}")
        self.model = model.eval()
        self.meta = meta
        self.phase = phase
        self.gl_iters = gl_iters
        self.seed = seed
        feats = dict(meta.get("features") or {})
        self.kind = feats.pop("kind", None)
        if self.kind != "seed":
            raise UserError(f"model uses features '{self.kind}', which this version cannot run")
        feats = {k: tuple(v) if isinstance(v, list) else v for k, v in feats.items()}
        self.feat = SeedFeatureConfig.from_dict(feats)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str = "cpu", **kwargs) -> "Denoiser":
        """Load a run folder, checkpoint folder or .safetensors file (with its .json)."""
        model, meta = load_model(path, device=device)
        return cls(model, meta, **kwargs)

    @property
    def sample_rate(self) -> int:
        return int(self.meta.get("sample_rate", self.feat.sample_rate))

    @torch.no_grad()
    def enhance_mono(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Denoise one channel ``[T]`` at ``sr``; returns ``[T]`` float32 at ``sr``."""
        n = x.shape[-1]
        if n == 0:
            return np.zeros(0, np.float32)
        rate = self.feat.sample_rate
        x48 = resample(np.asarray(x, np.float32), sr, rate)
        img, stats = wave_to_seed(x48, rate, self.feat)
        dev = next(iter(self.model.parameters())).device
        pred = self.model(img.to(dev)).clamp(0.0, 1.0).cpu()
        stats = clean_level_stats(stats, self.feat)
        method = "noisy-phase" if self.phase == "noisy" else "griffinlim"
        y48 = seed_invert(pred, stats, method=method, noisy_wave=[x48], n_iter=self.gl_iters, seed=self.seed,
                          cfg=self.feat)[0]
        y = resample(y48, rate, sr)
        return np.pad(y, (0, max(0, n - y.size)))[:n].astype(np.float32)

    def enhance(self, audio, sample_rate: int | None = None):
        """Denoise a path, a numpy array or a tensor; returns the same kind.

        Arrays/tensors: ``[T]`` or ``[channels, T]`` at ``sample_rate`` → same shape and rate.
        A path returns ``(array[channels, T], sample_rate)`` of the file.
        """
        if isinstance(audio, (str, os.PathLike)):
            x, sr = load_audio(Path(audio))
            return self._enhance_array(x, sr), sr
        if sample_rate is None or int(sample_rate) <= 0:
            raise UserError("enhance(audio, sample_rate): give the sample rate of the array")
        if isinstance(audio, torch.Tensor):
            y = self._enhance_array(audio.detach().cpu().float().numpy(), int(sample_rate))
            return torch.from_numpy(y).to(audio.device, audio.dtype)
        return self._enhance_array(np.asarray(audio), int(sample_rate))

    def _enhance_array(self, x: np.ndarray, sr: int) -> np.ndarray:
        if x.ndim not in (1, 2):
            raise UserError(f"audio must be [samples] or [channels, samples], got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise UserError("audio contains NaN or infinite samples")
        if x.ndim == 1:
            return self.enhance_mono(x, sr)
        return np.stack([self.enhance_mono(c, sr) for c in x]) if len(x) else x.copy()
