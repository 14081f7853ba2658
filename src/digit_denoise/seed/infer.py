"""The seed models at inference: one clip of audio → 112×112 image → model → image → audio.

One window = one clip → 48 kHz → image → model → image → mel power at the clip's own frame count and
absolute level (:func:`.inversion.seed_to_mel_power`) → linear magnitude → waveform with the noisy
input's phase (default; much better SI-SDR) or Griffin-Lim → back to the input's rate and length. The
seed representation is per clip (min-max normalised, resized to 112 frames), so windows stay close to the
training clips' length: inputs up to ``SEED_WINDOW_S`` (2 s) are one clip; longer ones are 2-s windows
cross-faded over 0.4 s (:meth:`SeedInference.windows`), each with its own level normalisation.
"""

from __future__ import annotations

import numpy as np
import torch

from ..audio import resample
from .features import SeedFeatureConfig, wave_to_seed
from .inversion import seed_invert

SEED_WINDOW_S = 2.0  # seconds per clip (inputs this short are one clip)
SEED_FADE_S = 0.4  # cross-fade between windows
SEED_DISCARD_S = 0.1  # edge of each window that is not used at all (STFT edge effects)


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


class SeedInference:
    """A seed-representation model (image → image) made to denoise audio clips."""

    def __init__(self, model: torch.nn.Module, features: dict, phase: str, gl_iters: int, seed: int):
        self.model, self.phase, self.gl_iters, self.seed = model, phase, gl_iters, seed
        self.feat = SeedFeatureConfig.from_dict({k: tuple(v) if isinstance(v, list) else v for k, v in features.items()})
        self.device = next(iter(model.parameters())).device

    def windows(self, chunk_seconds: float, sr: int) -> tuple[int, int, int]:
        """(window, discard, fade) in samples at ``sr`` for :func:`..enhance.overlap_add`."""
        window = max(2, round(chunk_seconds * sr))
        discard, fade = round(SEED_DISCARD_S * sr), round(SEED_FADE_S * sr)
        if window < 2 * (2 * discard + fade):  # a short chunk_seconds: overlap a quarter of each window
            discard, fade = 0, window // 4
        return window, discard, fade

    @torch.no_grad()
    def enhance_mono(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Denoise one channel ``[T]`` at ``sr`` as one clip; returns ``[T]`` float32 at ``sr``."""
        n = x.shape[-1]
        if n == 0:
            return np.zeros(0, np.float32)
        rate = self.feat.sample_rate
        x48 = resample(np.asarray(x, np.float32), sr, rate)
        img, stats = wave_to_seed(x48, rate, self.feat)
        pred = self.model(img.to(self.device)).clamp(0.0, 1.0).cpu()
        stats = clean_level_stats(stats, self.feat)
        method = "noisy-phase" if self.phase == "noisy" else "griffinlim"
        y48 = seed_invert(pred, stats, method=method, noisy_wave=[x48], n_iter=self.gl_iters, seed=self.seed,
                          cfg=self.feat)[0]
        y = resample(y48, rate, sr)
        return np.pad(y, (0, max(0, n - y.size)))[:n].astype(np.float32)
