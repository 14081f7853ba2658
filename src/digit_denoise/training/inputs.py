"""What a run trains on: seed images of a manifest (:class:`SeedData`) or on-the-fly waveform batches
(:func:`make_wave_data`). Both give ``train_batch(idx, epoch, pos) -> (noisy, clean)`` and fixed
validation batches.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.manifest import load_manifest, select
from ..data.pairs import BabblePool
from ..data.seed_cache import cached_seed_images, seed_images
from ..errors import UserError
from ..features import SeedFeatureConfig
from .config import TrainConfig


def manifest_paths(manifest: str) -> list[str]:
    """``a.csv`` or ``a.csv,b.csv`` → the manifest paths (waveform models train on their union)."""
    return [p.strip() for p in str(manifest).split(",") if p.strip()]


def load_rows(manifest: str) -> list:
    """All rows of one or several manifests (see :func:`manifest_paths`)."""
    return [r for p in manifest_paths(manifest) for r in load_manifest(p)]


class SeedData:
    """Clean/noisy seed images for the train and val splits (cached; fresh noise optional)."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        if len(manifest_paths(cfg.manifest)) != 1:
            raise UserError(f"--manifest {cfg.manifest}: seed models train on one manifest; merge corpora "
                            "with waveform models only")
        rows = load_manifest(cfg.manifest)
        self.feat = SeedFeatureConfig()
        self.pool = BabblePool(rows)
        self.train_rows = select(rows, "train", cfg.limit or None)
        self.val_rows = select(rows, "val", cfg.val_limit or None)
        self.fresh_noise = cfg.fresh_noise
        self.transform = None
        if cfg.fresh_noise and cfg.augment:  # a new voice and microphone for each clip, every epoch
            from ..data.batches import ClipAugment

            self.transform = ClipAugment(speed=augment_options(cfg), eq_db=cfg.eq_db)
        self.device = device
        self.train = cached_seed_images(self.train_rows, self.feat, pool=self.pool, name="train", device=device)
        self.val = cached_seed_images(self.val_rows, self.feat, pool=self.pool, name="val", device=device)
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def train_pairs(self, epoch: int) -> np.ndarray:
        """Array[N, 2, H, W] for ``epoch``: the cached fixed-noise images or this epoch's fresh noise."""
        if not self.fresh_noise or epoch == 0:
            return self.train
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            from ..data.noise import NoiseConfig

            kinds = tuple(sorted({r.noise for r in self.train_rows if r.noise != "given"})) or ("white",)
            snrs = tuple(sorted({float(r.snr) for r in self.train_rows if r.snr}))
            noise = NoiseConfig(kinds=kinds, snr=snrs or (-8.0,))
            arr, _ = seed_images(self.train_rows, self.feat, pool=self.pool, noise=noise, epoch=epoch,
                                 transform=self.transform, device=self.device, desc=f"fresh noise, epoch {epoch}")
            self._epoch_cache = (epoch, arr)
        return self._epoch_cache[1]

    def train_batch(self, idx: np.ndarray, epoch: int, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_tensors(self.train_pairs(epoch), idx, self.device)

    def val_batches(self, batch: int):
        for i in range(0, len(self.val), batch):
            yield batch_tensors(self.val, np.arange(i, min(i + batch, len(self.val))), self.device)


def augment_options(cfg: TrainConfig) -> tuple[float, float]:
    """The checked ``--speed`` range (and ``--eq-db``) of the clean-speech augmentation."""
    lo_s, _, hi_s = str(cfg.speed).partition(":")
    try:
        speed = (float(lo_s), float(hi_s or lo_s))
    except ValueError:
        speed = (0.0, 0.0)
    if not 0.5 <= speed[0] <= speed[1] <= 2.0:
        raise UserError(f"--speed {cfg.speed!r}: expected LO:HI between 0.5 and 2, e.g. 0.9:1.1")
    if not (0 <= cfg.eq_db <= 30):
        raise UserError(f"--eq-db {cfg.eq_db}: give 0 (off) to 30 dB")
    return speed


def make_wave_data(cfg: TrainConfig, sample_rate: int):
    """:class:`..data.batches.WaveData` for a waveform model (clips loaded at the model's rate)."""
    from ..data.batches import (WaveBatchConfig, WaveData, parse_int_range, parse_snr_focus, parse_snr_range,
                              parse_wave_noise)

    rows = load_rows(cfg.manifest)
    speed = augment_options(cfg)
    bcfg = WaveBatchConfig(sample_rate=sample_rate, segment=cfg.segment, snr=parse_snr_range(cfg.snr),
                           kinds=parse_wave_noise(cfg.noise), augment=cfg.augment, speed=speed, eq_db=cfg.eq_db,
                           babble_talkers=parse_int_range(cfg.babble_talkers, "babble-talkers"),
                           snr_focus=parse_snr_focus(cfg.snr_focus))
    data = WaveData(select(rows, "train", cfg.limit or None), select(rows, "val", cfg.val_limit or None), bcfg,
                    cfg.seed, cfg.batch_size)
    return data


def batch_tensors(arr: np.ndarray, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) Tensor[B, 1, H, W] for the rows ``idx`` of an Array[N, 2, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(arr[idx]))
    return x[:, 1:2].to(device), x[:, 0:1].to(device)
