"""On-the-fly noisy/clean waveform batches for waveform models (MaskNet & co.).

Clean clips of the manifest's train/val splits are loaded once at the model's rate into one flat
array (:class:`ClipBank`). Each batch is then made on tensors, with no per-sample Python work:

- a ``segment``-second window per clip (random crop, or the clip at a random offset in silence);
- augmentation of the clean speech (train only): a random spectral tilt (±6 dB/octave around 1 kHz,
  a microphone's colouring), optionally a random EQ of a few peaking biquads (``eq_db``), and a
  per-batch speed/pitch factor (``speed``);
- noise of a random kind per clip, made by :func:`.noise.noise_signal` (the same code as the fixed
  evaluation pairs): ``white`` / ``pink`` / ``brown``, ``colored`` (a random slope), ``babble`` or a
  noise folder;
- babble of ``babble_talkers`` other clips of the bank (many speakers), fresh every batch;
- mixed at an SNR drawn from the range, or with probability ``snr_focus[2]`` from the focus range
  ``snr_focus[:2]`` (whole-clip clean power over the clip's own samples, as in :func:`noise.mix_at_snr`); half the pairs (train only) then band-limited to 3.4 / 4 / 5.5 / 8 kHz
  as if recorded at a lower rate (noise included: a phone recording's noise stops at its band edge);
  last a random level for the pair (mixture RMS −42…−12 dBFS).

Every batch is a pure function of (seed, epoch, position): a resumed run sees the same data, and
the validation batches are fixed (seeded once, no augmentation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..audio import load_mono
from ..progress import progress
from .manifest import Row
from .noise import TRAINING_KINDS, NoiseFolder, noise_signal, snr_gain
from .voices import Enrolments, clip_embeddings


def generator(*keys) -> torch.Generator:
    """A torch generator seeded from any keys (stable across runs and processes)."""
    h = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))


class ClipBank:
    """Many mono clips in one flat ``Tensor[total]`` with ``offsets[N]`` and ``lengths[N]``."""

    def __init__(self, waves: list[np.ndarray], speakers: list[str] | None = None):
        self.lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
        self.offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), self.lengths[:-1]]), 0)
        self.flat = torch.from_numpy(np.concatenate(waves).astype(np.float32)) if waves else torch.zeros(0)
        names = sorted(set(speakers or []))
        self.speaker = torch.tensor([names.index(s) for s in speakers] if speakers else [0] * len(waves))

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_rows(cls, rows: list[Row], sr: int, desc: str) -> "ClipBank":
        waves = []
        for r in progress(rows, desc=desc, unit="clip"):
            waves.append(load_mono(r.clean_path, sr))
        return cls(waves, [r.speaker for r in rows])

    def windows(self, idx: Tensor, length: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """(``Tensor[B, length]`` windows of clips ``idx``, ``Tensor[B]`` samples of speech in each).

        A clip longer than ``length`` is cropped at a random start; a shorter one sits at a random
        offset with zeros around it.
        """
        n = self.lengths[idx]
        span = (n - length).abs() + 1
        r = (torch.rand(len(idx), generator=gen) * span).long()
        start = torch.where(n >= length, r, -r)  # negative: the clip starts later in the window
        j = start[:, None] + torch.arange(length)[None, :]
        valid = (j >= 0) & (j < n[:, None])
        pos = self.offsets[idx][:, None] + j.clamp(min=0).minimum((n[:, None] - 1).clamp(min=0))
        x = self.flat[pos] * valid
        return x, valid.sum(1)

    def clip(self, i: int) -> np.ndarray:
        """Clip ``i`` as a numpy view (no copy)."""
        start = int(self.offsets[i])
        return self.flat[start:start + int(self.lengths[i])].numpy()


def lowpass(x: Tensor, cutoff: Tensor, sr: int) -> Tensor:
    """Brick-wall low-pass of each row at ``cutoff[b]`` Hz (≥ sr/2: unchanged)."""
    f = torch.fft.rfftfreq(x.shape[-1], 1 / sr)
    keep = (f[None, :] <= cutoff[:, None]).to(x.dtype)
    return torch.fft.irfft(torch.fft.rfft(x) * keep, x.shape[-1])


BANDWIDTHS = (3400.0, 4000.0, 5500.0, 8000.0)  # telephone, 8 kHz, 11 kHz and 16 kHz recordings


def peaking_eq(x: Tensor, n_bands: int, max_db: float, sr: int, gen: torch.Generator) -> Tensor:
    """Each row through ``n_bands`` random peaking biquads (RBJ cookbook; centre 100 Hz–6 kHz
    log-uniform, Q 0.5–3, gain ±``max_db``), applied as their magnitude response (zero phase)."""
    b, length = x.shape
    f = torch.fft.rfftfreq(length, 1 / sr)
    w = 2 * torch.pi * f / sr
    gain = torch.ones(b, len(f))
    for _ in range(n_bands):
        f0 = 100.0 * (60.0 ** torch.rand(b, 1, generator=gen))
        q = 0.5 + 2.5 * torch.rand(b, 1, generator=gen)
        amp = 10 ** ((torch.rand(b, 1, generator=gen) * 2 - 1) * max_db / 40)
        w0 = 2 * torch.pi * f0 / sr
        alpha = torch.sin(w0) / (2 * q)
        cos0 = torch.cos(w0)
        num = torch.stack([1 + alpha * amp, -2 * cos0, 1 - alpha * amp])
        den = torch.stack([1 + alpha / amp, -2 * cos0, 1 - alpha / amp])
        z = torch.exp(-1j * w)[None, :]  # e^{-jω}
        h_num = num[0] + num[1] * z + num[2] * z * z
        h_den = den[0] + den[1] * z + den[2] * z * z
        gain = gain * (h_num.abs() / h_den.abs().clamp_min(1e-9))
    return torch.fft.irfft(torch.fft.rfft(x) * gain, length)


def tilt(x: Tensor, db_per_octave: Tensor, sr: int) -> Tensor:
    """Apply a spectral tilt of ``db_per_octave[b]`` around 1 kHz (limited to ±18 dB)."""
    f = torch.fft.rfftfreq(x.shape[-1], 1 / sr).clamp(min=60.0)
    gain_db = (db_per_octave[:, None] * torch.log2(f[None, :] / 1000.0)).clamp(-18, 18)
    return torch.fft.irfft(torch.fft.rfft(x) * 10 ** (gain_db / 20), x.shape[-1])


@dataclass(frozen=True)
class ClipAugment:
    """One clean clip spoken by "another voice into another microphone": a speed/pitch factor drawn from
    ``speed`` (pitch and tempo together), a spectral tilt of ±6 dB/octave and, when ``eq_db`` > 0,
    ``eq_bands`` random peaking biquads of ±``eq_db``. The seed models' fresh-noise epochs use it as
    :func:`.pairs.make_pair`'s ``transform``; ``rng`` makes it a pure function of the clip and epoch.
    """

    speed: tuple[float, float] = (0.85, 1.15)
    eq_db: float = 0.0
    eq_bands: int = 3

    def __call__(self, clean: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        """``Array[T]`` → ``Array[T']`` (T' = T / factor)."""
        gen = torch.Generator().manual_seed(int(rng.integers(1 << 62)))
        lo, hi = self.speed
        factor = float(lo + (hi - lo) * torch.rand((), generator=gen))
        x = torch.from_numpy(np.ascontiguousarray(clean, np.float32))[None]
        n = max(1, int(round(x.shape[-1] / factor)))
        if n != x.shape[-1]:
            x = F.interpolate(x[:, None], size=n, mode="linear", align_corners=False)[:, 0]
        x = tilt(x, torch.rand(1, generator=gen) * 12 - 6, sr)
        if self.eq_db > 0:
            x = peaking_eq(x, self.eq_bands, self.eq_db, sr, gen)
        return x[0].numpy()


@dataclass(frozen=True)
class WaveBatchConfig:
    """What a batch is made of. Built from a run's ``TrainConfig`` (``training.inputs.wave_batch_config``),
    which holds every default; here there are none."""

    sample_rate: int
    segment: float  # seconds per training window
    snr: tuple[float, float]  # SNR range (dB), uniform
    kinds: tuple[str, ...]  # noise kinds and/or noise folders
    augment: bool  # tilt + speed (+ EQ) on the clean speech
    speed: tuple[float, float]  # speed/pitch factor range (per batch)
    eq_db: float  # peaking-EQ gain range ±dB (0: no EQ)
    babble_talkers: tuple[int, int]  # talkers per babble clip (inclusive range)
    snr_focus: tuple[float, float, float] | None  # (lo, hi, share): share of SNRs drawn from [lo, hi]
    eq_bands: int = 3  # peaking biquads per clip when eq_db > 0 (not an option)


def _other_speakers(bank: ClipBank, target: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``k`` random clips of ``bank`` by speakers other than clip ``target``'s (any clip if all share one)."""
    spk, picks = int(bank.speaker[target]), []
    for _ in range(k):
        j = int(rng.integers(len(bank)))
        for _ in range(20):  # rejection: other speakers are the rule in a bank of many
            if int(bank.speaker[j]) != spk:
                break
            j = int(rng.integers(len(bank)))
        picks.append(bank.clip(j))
    return picks


def batch_noise(bank: ClipBank, cfg: WaveBatchConfig, idx: Tensor, length: int, gen: torch.Generator,
                noise_folders: dict[str, NoiseFolder]) -> np.ndarray:
    """``Array[B, length]`` of unit-RMS noise, a random kind of ``cfg.kinds`` per row; babble talkers (and the
    one competing ``talker``) are clips of other speakers of ``bank``, fresh for every batch."""
    rng = np.random.default_rng(int(torch.randint(1 << 62, (1,), generator=gen)))
    out = np.zeros((len(idx), length), np.float32)
    lo_t, hi_t = cfg.babble_talkers
    for i, target in enumerate(idx.tolist()):
        kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
        talkers = None
        if kind in ("babble", "talker"):
            k = 1 if kind == "talker" else int(rng.integers(lo_t, hi_t + 1))
            talkers = _other_speakers(bank, target, k, rng)
        out[i] = noise_signal(kind, length, rng, sr=cfg.sample_rate, talkers=talkers,
                              folder=noise_folders.get(kind))
    return out


def make_batch(bank: ClipBank, idx: Tensor, cfg: WaveBatchConfig, gen: torch.Generator,
               noise_folders: dict[str, NoiseFolder], augment: bool) -> tuple[Tensor, Tensor]:
    """(noisy, clean) ``Tensor[B, L]`` for clips ``idx`` of ``bank`` (see the module docstring)."""
    sr, b = cfg.sample_rate, len(idx)
    length = int(round(cfg.segment * sr))
    speed = 1.0
    if augment:
        lo_s, hi_s = cfg.speed
        speed = float(lo_s + (hi_s - lo_s) * torch.rand((), generator=gen))
    grab = int(round(length * speed))
    clean, n_speech = bank.windows(idx, grab, gen)
    if grab != length:  # play faster/slower: pitch and tempo move together
        clean = F.interpolate(clean[:, None], size=length, mode="linear", align_corners=False)[:, 0]
        n_speech = (n_speech.float() * length / grab).long()
    if augment:
        clean = tilt(clean, torch.rand(b, generator=gen) * 12 - 6, sr)
        if cfg.eq_db > 0:
            clean = peaking_eq(clean, cfg.eq_bands, cfg.eq_db, sr, gen)
    p_clean = clean.pow(2).sum(-1) / n_speech.clamp(min=1)

    noise = torch.from_numpy(batch_noise(bank, cfg, idx, length, gen, noise_folders))
    lo, hi = cfg.snr
    snr = lo + (hi - lo) * torch.rand(b, generator=gen)
    if cfg.snr_focus is not None:
        f_lo, f_hi, share = cfg.snr_focus
        focus = f_lo + (f_hi - f_lo) * torch.rand(b, generator=gen)
        snr = torch.where(torch.rand(b, generator=gen) < share, focus, snr)
    noise = noise * torch.tensor([snr_gain(float(p), 1.0, float(d)) for p, d in zip(p_clean, snr)])[:, None]
    noisy = clean + noise
    if augment:  # half the pairs as if recorded at a lower rate: noise and speech both band-limited
        bw = torch.tensor(BANDWIDTHS)[torch.randint(len(BANDWIDTHS), (b,), generator=gen)]
        bw = torch.where(torch.rand(b, generator=gen) < 0.5, bw, torch.full((b,), sr / 2))
        noisy, clean = lowpass(noisy, bw, sr), lowpass(clean, bw, sr)
    # a random recording level for the pair, never clipping
    level = 10 ** ((-42 + 30 * torch.rand(b, generator=gen)) / 20)
    rms = noisy.pow(2).mean(-1).clamp_min(1e-12).sqrt()
    gain = level / rms
    peak = noisy.abs().amax(-1).clamp_min(1e-9)
    gain = torch.minimum(gain, 0.99 / peak)
    return noisy * gain[:, None], clean * gain[:, None]


class WaveData:
    """Train/val clip banks of a manifest and the batches a waveform model trains on; for a personalised
    model (``voice``) each batch also holds every clip's enrolment (:mod:`.voices`)."""

    def __init__(self, train_rows: list[Row], val_rows: list[Row], cfg: WaveBatchConfig, seed: int,
                 batch_size: int, voice: bool = False):
        self.cfg, self.seed, self.batch_size = cfg, seed, batch_size
        self.train = ClipBank.from_rows(train_rows, cfg.sample_rate, "load train clips")
        self.val = ClipBank.from_rows(val_rows, cfg.sample_rate, "load val clips")
        self.noise_folders = {k: NoiseFolder.load(k, cfg.sample_rate) for k in cfg.kinds if k not in TRAINING_KINDS}
        self.enrol = self.val_enrol = None
        if voice:
            self.enrol = Enrolments(clip_embeddings(train_rows, self.train, cfg.sample_rate, "embed train voices"),
                                    [r.speaker for r in train_rows])
            self.val_enrol = Enrolments(clip_embeddings(val_rows, self.val, cfg.sample_rate, "embed val voices"),
                                        [r.speaker for r in val_rows])
        self._val: list[tuple[Tensor, ...]] | None = None

    def train_batch(self, idx: np.ndarray, epoch: int, pos: int) -> tuple[Tensor, ...]:
        """(noisy, clean) ``Tensor[B, L]`` (+ the enrolments ``Tensor[B, 256]`` for a personalised model)."""
        gen = generator("train", self.seed, epoch, pos)
        idx = torch.as_tensor(idx)
        pair = make_batch(self.train, idx, self.cfg, gen, self.noise_folders, self.cfg.augment)
        return pair if self.enrol is None else (*pair, self.enrol.enrol(idx, gen))

    def val_batches(self) -> list[tuple[Tensor, ...]]:
        if self._val is None:
            gen = generator("val", self.seed)
            self._val = []
            for i in range(0, len(self.val), self.batch_size):
                idx = torch.arange(i, min(i + self.batch_size, len(self.val)))
                pair = make_batch(self.val, idx, self.cfg, gen, self.noise_folders, False)
                self._val.append(pair if self.val_enrol is None else (*pair, self.val_enrol.enrol(idx, gen)))
        return self._val
