"""Clean/noisy pairs from manifest rows: ``make_pair(row) -> (clean, noisy, sr)``.

A clip's noise is a pure function of (row.noise_seed, row.id[, epoch]): the same pair comes back in
any process, during training (on the fly) and at evaluation. Babble talkers are drawn only from
*other speakers of the same split*, so test speakers never leak into training.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..audio import load_mono, write_audio
from ..errors import UserError
from ..progress import progress, say
from .manifest import Row, _rel, write_manifest
from .noise import BUILTIN_KINDS, COLORS, NoiseConfig, NoiseFolder, clip_rng, is_noise_folder, mix_at_snr, noise_signal


class AudioCache:
    """A bounded LRU of mono clips keyed by (path, sample rate)."""

    def __init__(self, max_items: int = 4096):
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._folders: dict[tuple[str, int], NoiseFolder] = {}

    def get(self, path: str, sr: int) -> np.ndarray:
        key = (path, sr)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        x = load_mono(path, sr)
        self._items[key] = x
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return x

    def noise_folder(self, root: str, sr: int) -> NoiseFolder:
        key = (root, sr)
        if key not in self._folders:
            self._folders[key] = NoiseFolder.load(root, sr)
        return self._folders[key]


_CACHE = AudioCache()


class BabblePool:
    """Candidate babble talkers: the rows of each split, grouped by speaker."""

    def __init__(self, rows: list[Row]):
        self.by_split: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            self.by_split[r.split][r.speaker].append(r)

    def talkers(self, row: Row, k: int, rng: np.random.Generator) -> list[Row]:
        """``k`` utterances of speakers other than ``row.speaker`` from ``row.split``."""
        others = sorted(s for s in self.by_split[row.split] if s != row.speaker)
        if not others:
            raise UserError(f"babble for {row.id}: no other speaker in the '{row.split}' split to draw talkers from")
        picks = []
        for _ in range(k):
            spk = others[int(rng.integers(len(others)))]
            pool = self.by_split[row.split][spk]
            picks.append(pool[int(rng.integers(len(pool)))])
        return picks


def make_noise(row: Row, kind: str, n: int, sr: int, rng: np.random.Generator, *, pool: BabblePool | None,
               babble_talkers: int = 5, cache: AudioCache = _CACHE) -> np.ndarray:
    """Unit-RMS noise of ``kind`` for ``row``, float32 [n] (see :func:`.noise.noise_signal`)."""
    talkers = folder = None
    if kind in ("babble", "talker"):  # talkers of other speakers of the same split (one for `talker`)
        if pool is None:
            raise ValueError(f"{kind} needs a BabblePool")
        k = 1 if kind == "talker" else babble_talkers
        talkers = [cache.get(t.clean_path, sr) for t in pool.talkers(row, k, rng)]
    elif kind not in COLORS:
        if not is_noise_folder(kind):
            raise UserError(f"noise {kind!r} for {row.id}: not {'/'.join(BUILTIN_KINDS)} and not an existing folder")
        folder = cache.noise_folder(kind, sr)
    return noise_signal(kind, n, rng, sr=sr, talkers=talkers, folder=folder)


def make_pair(row: Row, *, sr: int | None = None, pool: BabblePool | None = None, epoch: int | None = None,
              noise: NoiseConfig | None = None, seed: int | None = None, babble_talkers: int = 5,
              cache: AudioCache = _CACHE, transform=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Return (clean, noisy, sr): mono float32 [T] arrays at ``sr`` (the file's rate when None).

    By default the row's own recipe (``row.noise``, ``row.snr``, ``row.noise_seed``) is used: this is the
    fixed evaluation noise. ``noise``/``seed`` override the recipe (training over many kinds/SNRs);
    ``epoch`` makes fresh noise per epoch while staying a pure function of (seed, id, epoch).
    ``transform(clean, sr, rng) -> clean`` changes the clean speech before it is mixed (augmentation;
    its ``rng`` is a pure function of (seed, id, epoch) too; not applied to a given noisy file's pair).
    Rows with a given noisy file use it (resampled to ``sr``; cropped/padded to the clean length).
    """
    sr = sr or row.sample_rate
    clean = cache.get(row.clean_path, sr).copy()  # a copy: callers may modify it, the cache must not change
    if row.noisy_path and noise is None:
        noisy = cache.get(row.noisy_path, sr)
        if noisy.size != clean.size:
            noisy = np.pad(noisy, (0, max(0, clean.size - noisy.size)))[: clean.size]
        return clean, noisy.astype(np.float32), sr
    seed = row.noise_seed if seed is None else seed
    if transform is not None:
        aug_keys = ("augment",) if epoch is None else ("augment", f"epoch{epoch}")
        clean = np.asarray(transform(clean, sr, clip_rng(seed, row.id, *aug_keys)), np.float32)
    keys = ("noise",) if epoch is None else ("noise", f"epoch{epoch}")
    rng = clip_rng(seed, row.id, *keys)
    if noise is None:
        kind, snr = row.noise, float(row.snr)
    else:
        kind, snr = noise.draw(rng)
        babble_talkers = noise.babble_talkers
    n = make_noise(row, kind, clean.size, sr, rng, pool=pool, babble_talkers=babble_talkers, cache=cache)
    noisy, _ = mix_at_snr(clean, n, snr)
    return clean, noisy, sr


def mix_to_disk(rows: list[Row], out_dir: str | Path, *, sr: int | None = None, overwrite: bool = False,
                all_rows: list[Row] | None = None) -> Path:
    """Write each row's noisy clip as ``out_dir/<id>_noisy.wav`` (32-bit float: no clipping) and a
    manifest ``out_dir/manifest.csv`` pointing at them. Returns the new manifest's path."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.csv"
    if manifest_path.exists() and not overwrite:
        raise UserError(f"{manifest_path}: already exists; pass --overwrite or choose another --out")
    pool = BabblePool(all_rows or rows)
    new_rows = []
    for r in progress(rows, desc="mixing", unit="clip"):
        clean, noisy, rate = make_pair(r, sr=sr, pool=pool)
        path = out_dir / f"{r.id}_noisy.wav"
        write_audio(path, noisy, rate, subtype="FLOAT", overwrite=overwrite)
        new_rows.append(replace(r, noisy_path=str(path.resolve())))
    # Paths in the written manifest are relative to its folder, like every manifest.
    base = manifest_path.resolve().parent
    rel_rows = [replace(r, clean_path=_rel(Path(r.clean_path), base), noisy_path=_rel(Path(r.noisy_path), base),
                        noise=r.noise if r.noise in (*BUILTIN_KINDS, "given")
                        else _rel(Path(r.noise), base)) for r in new_rows]
    write_manifest(rel_rows, manifest_path, overwrite=overwrite)
    say(f"wrote {len(rows)} noisy clips and {manifest_path}")
    return manifest_path
