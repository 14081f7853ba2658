"""Manifest rows → model-ready tensors, computed once and cached.

For the seed representation, the clean and noisy 112×112 images of every clip are computed in
batches (torch) and stored as memory-mapped ``.npy`` files keyed by a hash of (rows, noise recipe,
feature config), so epochs never recompute them. Fresh noise per epoch computes the noisy
images on the fly instead (still a pure function of seed, clip id and epoch).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .audio import atomic_path
from .data import BabblePool, make_pair
from .features import SeedFeatureConfig, SeedFeatures
from .manifest import Row
from .noise import NoiseConfig
from .progress import progress

CACHE_VERSION = 1


def cache_dir() -> Path:
    """``$DIGIT_DENOISE_CACHE`` or ``~/.cache/digit-denoise``."""
    return Path(os.environ.get("DIGIT_DENOISE_CACHE") or Path.home() / ".cache" / "digit-denoise")


def rows_key(rows: list[Row], feat: SeedFeatureConfig, extra: dict | None = None) -> str:
    """Hash of everything that determines the cached arrays."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "feat": asdict(feat), "extra": extra or {}}, sort_keys=True).encode())
    for r in rows:
        h.update(f"{r.id}|{r.clean_path}|{r.noisy_path}|{r.noise}|{r.snr}|{r.noise_seed}|{r.duration}|"
                 f"{_file_sig(r.clean_path)}|{_file_sig(r.noisy_path)}\n".encode())
    return h.hexdigest()[:20]


def _file_sig(path: str) -> str:
    """Size and mtime of a file, so a corpus rewritten in place does not reuse stale images."""
    if not path:
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _pool_key(rows: list[Row], pool: BabblePool) -> dict:
    """Babble noise depends on the other talkers of the split (the pool), not only on ``rows``."""
    if not any(r.noise == "babble" for r in rows):
        return {}
    h = hashlib.sha256()
    for split in sorted({r.split for r in rows}):
        for spk, utts in sorted(pool.by_split.get(split, {}).items()):
            for u in utts:
                h.update(f"{split}|{spk}|{u.id}|{u.clean_path}|{_file_sig(u.clean_path)}\n".encode())
    return {"pool": h.hexdigest()[:20]}


def seed_images(rows: list[Row], feat: SeedFeatureConfig, *, pool: BabblePool, batch: int = 64,
                noise: NoiseConfig | None = None, epoch: int | None = None,
                device: str | torch.device = "cpu", desc: str = "features") -> tuple[np.ndarray, dict]:
    """Compute clean/noisy seed images for ``rows``. Returns (array[N, 2, H, W] float32, stats).

    ``array[:, 0]`` is clean, ``array[:, 1]`` noisy. ``stats`` holds per-clip inversion values of the
    noisy images (frames, db_min, db_max, ref_power) as numpy arrays.
    """
    fe = SeedFeatures(feat).to(device)
    out = np.zeros((len(rows), 2, *feat.size), np.float32)
    stats: dict[str, list] = {}
    bar = progress(total=len(rows), desc=desc, unit="clip")
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        pairs = [make_pair(r, sr=feat.sample_rate, pool=pool, noise=noise, epoch=epoch) for r in chunk]
        for j, which in enumerate(("clean", "noisy")):
            waves = [p[j] for p in pairs]
            lengths = torch.tensor([w.size for w in waves])
            padded = torch.zeros(len(waves), int(lengths.max()))
            for k, w in enumerate(waves):
                padded[k, : w.size] = torch.from_numpy(w)
            with torch.no_grad():
                img, st = fe(padded.to(device), lengths.to(device))
            out[i:i + len(chunk), j] = img[:, 0].cpu().numpy()
            if which == "noisy":
                for key, val in st.items():
                    stats.setdefault(key, []).extend(torch.as_tensor(val).cpu().numpy().tolist())
        bar.update(len(chunk))
    bar.close()
    return out, {k: np.asarray(v) for k, v in stats.items()}


def cached_seed_images(rows: list[Row], feat: SeedFeatureConfig, *, pool: BabblePool, name: str = "",
                       device: str | torch.device = "cpu") -> np.ndarray:
    """Like :func:`seed_images` with the fixed (evaluation) noise, cached on disk as a memmap."""
    key = rows_key(rows, feat, _pool_key(rows, pool))
    folder = cache_dir() / "features"
    path = folder / f"seed-{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError):  # damaged cache file: compute it again
            arr = None
        if arr is not None and arr.shape == (len(rows), 2, *feat.size):
            return arr
    arr, _ = seed_images(rows, feat, pool=pool, device=device, desc=f"features {name}".strip())
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    return np.load(path, mmap_mode="r")


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
