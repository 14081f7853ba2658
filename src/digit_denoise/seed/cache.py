"""Manifest rows → model-ready tensors, computed once and cached.

For the seed representation, the clean and noisy 112×112 images of every clip are computed in
batches (torch) and stored as memory-mapped ``.npy`` files keyed by a hash of (rows, noise recipe,
feature config), so epochs never recompute them. Fresh noise per epoch computes the noisy
images on the fly instead (still a pure function of seed, clip id and epoch).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..audio import atomic_path
from ..data.manifest import Row
from ..data.noise import NoiseConfig
from ..data.pairs import BabblePool, make_pair
from ..progress import progress
from .features import SeedFeatureConfig, SeedFeatures

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
    if not any(r.noise in ("babble", "talker") for r in rows):
        return {}
    h = hashlib.sha256()
    for split in sorted({r.split for r in rows}):
        for spk, utts in sorted(pool.by_split.get(split, {}).items()):
            for u in utts:
                h.update(f"{split}|{spk}|{u.id}|{u.clean_path}|{_file_sig(u.clean_path)}\n".encode())
    return {"pool": h.hexdigest()[:20]}


def _fill_workers() -> int:
    """Worker processes for the feature fill: ``$DIGIT_DENOISE_FEATURE_WORKERS`` or 0 (in-process).

    Measured on 2 CPU cores (``make bench``, case 1): one process with torch's intra-op
    threads fills the cache as fast as or faster than 2 single-thread worker processes, because
    the per-clip Python part (read, resample, mix: ~0.5 ms) is small next to the batched STFT /
    mel / resize (which torch already spreads over the cores), and workers pay for start-up and
    for shipping 100 kB of images per clip back. More cores with slow I/O may favour workers.
    """
    try:
        return max(0, int(os.environ.get("DIGIT_DENOISE_FEATURE_WORKERS", "0")))
    except ValueError:
        return 0


# Per-process state of a fill (set before the pool forks, or in the worker's initializer).
_FILL: dict = {}


def _fill_init(state: dict, threads: int | None) -> None:
    _FILL.clear()
    _FILL.update(state)
    if threads:
        torch.set_num_threads(threads)


def _fill_pairs(idx: list[int]) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """The (clean, noisy) waves of rows ``idx`` at the feature rate (per-clip I/O, soxr, noise)."""
    st = _FILL
    rows, feat = st["rows"], st["feat"]
    return [make_pair(rows[i], sr=feat.sample_rate, pool=st["pool"], noise=st["noise"], epoch=st["epoch"],
                      transform=st.get("transform")) for i in idx]


def _fill_chunk(idx: list[int], pairs=None) -> tuple[list[int], np.ndarray, dict[str, np.ndarray]]:
    """Images Array[b, 2, H, W] and noisy-image stats of the rows ``idx`` (one torch call per side)."""
    st = _FILL
    feat, fe, device = st["feat"], st["fe"], st["device"]
    pairs = _fill_pairs(idx) if pairs is None else pairs
    imgs = np.empty((len(idx), 2, *feat.size), np.float32)
    stats: dict[str, np.ndarray] = {}
    for j in (0, 1):  # clean, noisy
        waves = [p[j] for p in pairs]
        lengths = torch.tensor([w.size for w in waves], dtype=torch.long)
        padded = torch.zeros(len(waves), int(lengths.max()))
        for k, w in enumerate(waves):
            padded[k, : w.size] = torch.from_numpy(w)
        with torch.no_grad():
            img, s = fe(padded.to(device), lengths.to(device))
        imgs[:, j] = img[:, 0].cpu().numpy()
        if j == 1:
            # through Python scalars: int64 / float64 arrays
            stats = {key: np.asarray(torch.as_tensor(val).cpu().tolist()) for key, val in s.items()}
    return idx, imgs, stats


FILL_BATCH_CPU = 16  # clips per batched feature call on CPU (measured: 16 is ~2.5× faster per clip than 128)


def seed_images(rows: list[Row], feat: SeedFeatureConfig, *, pool: BabblePool, batch: int | None = None,
                noise: NoiseConfig | None = None, epoch: int | None = None, transform=None,
                device: str | torch.device = "cpu", desc: str = "features",
                workers: int | None = None, prefetch: bool = True) -> tuple[np.ndarray, dict]:
    """Compute clean/noisy seed images for ``rows``. Returns (array[N, 2, H, W] float32, stats).

    ``array[:, 0]`` is clean, ``array[:, 1]`` noisy. ``stats`` holds per-clip inversion values of the
    noisy images (frames, db_min, db_max, ref_power) as numpy arrays. ``transform`` augments each clean
    clip before it is mixed (see :func:`.pairs.make_pair`).

    Rows are processed ``batch`` at a time (default: :data:`FILL_BATCH_CPU` on CPU, where small
    batches stay in cache, 128 on an accelerator) in order of duration (so a batch pads to a similar
    length: about half the STFT work of input order on FSDD), one batched torch call per side,
    and written back in the rows' order. ``workers`` > 0 fills with that many single-thread
    processes (default: ``$DIGIT_DENOISE_FEATURE_WORKERS`` or 0 = this process, torch threads).
    """
    n = len(rows)
    if batch is None:
        batch = FILL_BATCH_CPU if torch.device(device).type == "cpu" else 128
    out = np.zeros((n, 2, *feat.size), np.float32)
    stats: dict[str, np.ndarray] = {}
    order = sorted(range(n), key=lambda i: (float(rows[i].duration or 0.0), i))
    chunks = [order[i:i + batch] for i in range(0, n, batch)]
    workers = _fill_workers() if workers is None else max(0, int(workers))
    if torch.device(device).type != "cpu":
        workers = 0  # the accelerator does the work; one process feeds it
    state = dict(rows=rows, feat=feat, fe=SeedFeatures(feat).to(device), device=device, pool=pool,
                 noise=noise, epoch=epoch, transform=transform)

    def take(res) -> None:
        idx, imgs, st = res
        out[idx] = imgs
        for key, val in st.items():
            if key not in stats:
                stats[key] = np.zeros(n, val.dtype)
            stats[key][idx] = val
        bar.update(len(idx))

    bar = progress(total=n, desc=desc, unit="clip")
    if workers > 0 and len(chunks) > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with cf.ProcessPoolExecutor(min(workers, len(chunks)), mp_context=ctx, initializer=_fill_init,
                                    initargs=(state, 1)) as ex:
            for res in ex.map(_fill_chunk, chunks):
                take(res)
    else:
        saved = dict(_FILL)
        _fill_init(state, None)
        try:
            if prefetch and len(chunks) > 1:
                # read/resample/mix the next batch in a thread while torch works on this one
                # (soundfile, soxr, numpy and torch all release the GIL for the heavy parts)

                with cf.ThreadPoolExecutor(1) as ex:
                    nxt = ex.submit(_fill_pairs, chunks[0])
                    for k, c in enumerate(chunks):
                        pairs = nxt.result()
                        if k + 1 < len(chunks):
                            nxt = ex.submit(_fill_pairs, chunks[k + 1])
                        take(_fill_chunk(c, pairs))
            else:
                for c in chunks:
                    take(_fill_chunk(c))
        finally:
            _fill_init(saved, None)
    bar.close()
    return out, stats


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
