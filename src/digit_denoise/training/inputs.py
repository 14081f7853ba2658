"""What a run trains on: seed images of a manifest (:class:`SeedData`) or on-the-fly waveform batches
(:func:`make_wave_data`). Both give ``train_batch(idx, epoch, pos) -> (noisy, clean)`` and fixed
validation batches.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..data.batches import ClipAugment, WaveBatchConfig, WaveData
from ..data.manifest import load_manifest, manifest_paths, select
from ..data.noise import TRAINING_KINDS, NoiseConfig, parse_kinds
from ..data.pairs import BabblePool
from ..data.voices import enrollable, known_speaker
from ..errors import UserError
from ..seed.cache import cached_seed_images, seed_images
from ..seed.features import SeedFeatureConfig
from .config import TrainConfig


def load_rows(manifest: str) -> list:
    """All rows of one or several manifests (see :func:`manifest_paths`)."""
    return [r for p in manifest_paths(manifest) for r in load_manifest(p)]


class SeedData:
    """Clean/noisy seed images for the train and val splits (cached; fresh noise optional). The seed task is
    spoken digits: of several manifests (their union), only the clips of digits are used."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        rows = [r for r in load_rows(cfg.manifest) if r.digit >= 0]
        if not rows:
            raise UserError(f"--manifest {','.join(cfg.manifest)}: no clip of a spoken digit; the seed models "
                            "denoise digits (AudioMNIST, FSDD or the digit words of a corpus)")
        self.feat = SeedFeatureConfig()
        self.pool = BabblePool(rows)
        self.train_rows = select(rows, "train", cfg.limit or None)
        self.val_rows = select(rows, "val", cfg.val_limit or None)
        self.fresh_noise = cfg.fresh_noise
        self.transform = None
        if cfg.fresh_noise and cfg.augment:  # a new voice and microphone for each clip, every epoch
            self.transform = ClipAugment(speed=cfg.speed, eq_db=cfg.eq_db)
        self.device = device
        self.train = cached_seed_images(self.train_rows, self.feat, pool=self.pool, name="train", device=device)
        self.val = cached_seed_images(self.val_rows, self.feat, pool=self.pool, name="val", device=device)
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def train_pairs(self, epoch: int) -> np.ndarray:
        """Array[N, 2, H, W] for ``epoch``: the cached fixed-noise images or this epoch's fresh noise."""
        if not self.fresh_noise or epoch == 0:
            return self.train
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
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


def wave_batch_config(cfg: TrainConfig, sample_rate: int) -> WaveBatchConfig:
    """The batch settings of a run (every value already typed and checked by the config's parsers; the noise
    folders must exist)."""
    return WaveBatchConfig(sample_rate=sample_rate, segment=cfg.segment, snr=cfg.snr,
                           kinds=parse_kinds(cfg.noise, TRAINING_KINDS), augment=cfg.augment, speed=cfg.speed,
                           eq_db=cfg.eq_db, babble_talkers=cfg.babble_talkers, snr_focus=cfg.snr_focus)


def make_wave_data(cfg: TrainConfig, sample_rate: int, voice: bool = False) -> WaveData:
    """:class:`..data.batches.WaveData` for a waveform model (clips loaded at the model's rate). For a
    personalised model (``voice``), speakers are told apart per manifest (two corpora may both have a
    speaker "01") and only clips that can be enrolled from another clip of their speaker are kept."""
    rows = load_rows(cfg.manifest)
    if voice:
        rows = enrollable([replace(r, speaker=f"{k}:{r.speaker}") if known_speaker(r.speaker) else r
                           for k, p in enumerate(manifest_paths(cfg.manifest)) for r in load_manifest(p)])
    train, val = select(rows, "train", cfg.limit or None), select(rows, "val", cfg.val_limit or None)
    if voice:
        train, val = enrollable(train), enrollable(val)  # the limit may have left a speaker with one clip
    return WaveData(train, val, wave_batch_config(cfg, sample_rate), cfg.seed, cfg.batch_size, voice=voice)


def batch_tensors(arr: np.ndarray, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) Tensor[B, 1, H, W] for the rows ``idx`` of an Array[N, 2, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(arr[idx]))
    return x[:, 1:2].to(device), x[:, 0:1].to(device)
