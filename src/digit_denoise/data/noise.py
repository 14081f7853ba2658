"""Noise: the one implementation of noise kinds, seeded generators and SNR scaling.

Kinds: ``white`` / ``pink`` / ``brown`` (power ∝ 1/f^0, 1/f, 1/f², flat below 40 Hz so the power
is in the audible band), ``babble`` (other talkers summed), ``talker`` (one other talker), a folder of noise recordings (``DIR``,
``DIR:seen``, ``DIR:unseen``) and, for training only, ``colored`` (1/f^α with a random α) and
``texture`` (synthetic non-stationary noise: transients, hum, modulated and band-limited noise; see
:func:`texture_noise`).
:func:`noise_signal` makes any of them; the fixed evaluation pairs (:mod:`.pairs`) and the
on-the-fly training batches (:mod:`.batches`) both call it, and both scale with :func:`snr_gain`.

Every random choice comes from :func:`clip_rng`, a pure function of (seed, clip id, keys), so
a clip's noise can be made on the fly during training and reproduced exactly at evaluation.
SNR is the whole-clip clean-to-noise power ratio (over the clip's own samples).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import AUDIO_EXTENSIONS, load_mono
from ..errors import UserError

BUILTIN_KINDS = ("white", "pink", "brown", "babble", "talker")  # kinds a manifest or an evaluation grid may name
TRAINING_KINDS = (*BUILTIN_KINDS, "colored", "texture")  # and what waveform training may draw on the fly
COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power-spectrum slope α of 1/f^α
COLORED_SLOPES = (-1.0, 2.5)  # range of α for the training kind "colored"
FLOOR_HZ = 40.0  # every coloured spectrum is flat below this: its power stays in the audible band


UNSEEN_SHARE = 0.3  # share of a noise folder's files held out of training by ``DIR:unseen``
FOLDER_PARTS = ("seen", "unseen")


def _split_spec(spec: str) -> tuple[Path, str]:
    """``DIR``, ``DIR:seen`` or ``DIR:unseen`` → (folder, part); part is "" for the whole folder."""
    spec = str(spec)
    head, sep, part = spec.rpartition(":")
    if sep and part in FOLDER_PARTS and not Path(spec).is_dir():
        return Path(head), part
    return Path(spec), ""


def is_noise_folder(spec: str) -> bool:
    """True when ``spec`` names an existing folder (optionally with ``:seen`` / ``:unseen``)."""
    folder, _ = _split_spec(spec)
    return folder.is_dir()


def noise_files(spec: str) -> list[Path]:
    """The noise files of ``DIR`` (all), ``DIR:seen`` or ``DIR:unseen``.

    ``unseen`` is a fixed ~30 % of the folder's files (at least one), chosen by a hash of each file
    name, so the same files are held out on every machine; ``seen`` is the rest. Train on
    ``DIR:seen`` and evaluate on ``DIR:unseen`` to measure noise the model never heard.
    """
    folder, part = _split_spec(spec)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not part or len(files) < 2:
        if part and files:
            raise UserError(f"{spec}: the folder has a single noise file; it cannot be split into seen/unseen")
        return files
    ranked = sorted(files, key=lambda f: hashlib.sha256(f"unseen:{f.name}".encode()).hexdigest())
    unseen = set(ranked[:max(1, round(UNSEEN_SHARE * len(files)))])
    return [f for f in files if (f in unseen) == (part == "unseen")]


def noise_label(spec: str) -> str:
    """Short display name of a noise kind: ``white`` or ``noise16k:unseen``."""
    if spec in BUILTIN_KINDS:
        return spec
    folder, part = _split_spec(spec)
    return folder.name + (f":{part}" if part else "")


def clip_rng(seed: int, clip_id: str, *keys) -> np.random.Generator:
    """A generator seeded by sha256(seed, clip_id, keys): same inputs, same stream, any process."""
    text = "\x1f".join([str(int(seed)), str(clip_id), *map(str, keys)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def unit_rms(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to RMS 1 (float32); silence stays silence."""
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def colored_noise(alpha: float, n: int, rng: np.random.Generator, sr: int = 16000,
                  floor_hz: float = FLOOR_HZ) -> np.ndarray:
    """Gaussian noise with power spectrum ∝ 1/f^alpha, float32 [n], unit RMS.

    Shaped in the frequency domain, so brown noise has no random-walk drift; DC is removed. With
    ``floor_hz`` the spectrum is flat below that frequency. ``alpha == 0`` is plain white noise.
    """
    if n <= 0:
        return np.zeros(0, np.float32)
    white = rng.standard_normal(n)
    if alpha == 0:
        return unit_rms(white)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1] if n > 1 else 1.0  # keep DC finite; removed below
    spec = spec * np.maximum(f, floor_hz) ** (-alpha / 2)
    spec[0] = 0.0
    return unit_rms(np.fft.irfft(spec, n))


def _smooth_envelope(n: int, rng: np.random.Generator, sr: int, max_hz: float) -> np.ndarray:
    """A random positive envelope, float64 [n], varying no faster than ``max_hz`` (mean ≈ 1)."""
    knots = max(2, int(n / sr * max_hz) + 2)
    env = np.interp(np.arange(n), np.linspace(0, n - 1, knots), rng.standard_normal(knots))
    depth = rng.uniform(0.2, 1.0)
    return np.exp(depth * 1.5 * env)


def _transients(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Clicks, knocks and clatter: Poisson-timed noise bursts through decaying resonances."""
    out = np.zeros(n, np.float64)
    rate = rng.uniform(1.0, 25.0)  # events per second
    for start in np.flatnonzero(rng.random(n) < rate / sr)[:400]:
        length = int(sr * rng.uniform(0.005, 0.12))
        t = np.arange(min(length, n - start)) / sr
        f0 = rng.uniform(300.0, min(7000.0, sr / 2 - 500))
        decay = rng.uniform(0.003, 0.05)
        burst = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / decay)
        burst += 0.5 * rng.standard_normal(t.size) * np.exp(-t / (decay / 3))
        out[start:start + t.size] += burst * 10 ** rng.uniform(-1, 0)
    return out


def _hum(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Motors, fans, mains hum: a harmonic series on a slowly wandering pitch."""
    f0 = rng.uniform(40.0, 400.0)
    wander = 1 + 0.03 * (_smooth_envelope(n, rng, sr, 2.0) - 1).clip(-3, 3) / 3
    phase = 2 * np.pi * np.cumsum(f0 * wander) / sr
    out = np.zeros(n, np.float64)
    for k in range(1, int(min(30, (sr / 2 - 200) // f0)) + 1):
        out += rng.uniform(0, 1) / k ** rng.uniform(0, 1.5) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _band_noise(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Wind, water, fans: coloured noise kept to a random band, with a random level contour."""
    x = colored_noise(float(rng.uniform(-1, 2.5)), n, rng, sr).astype(np.float64)
    f = np.fft.rfftfreq(n, 1 / sr)
    lo = np.exp(rng.uniform(np.log(50), np.log(2000)))
    hi = min(sr / 2, lo * np.exp(rng.uniform(np.log(2), np.log(40))))
    spec = np.fft.rfft(x) * ((f >= lo) & (f <= hi))
    return np.fft.irfft(spec, n) * _smooth_envelope(n, rng, sr, rng.uniform(0.3, 8.0))


def texture_noise(n: int, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """Synthetic non-stationary noise for training, float32 [n], unit RMS: the sum of 1–3 random
    layers of transients (:func:`_transients`), hum (:func:`_hum`) and band-limited, level-modulated
    noise (:func:`_band_noise`), each at a random level. Real noise is seldom stationary or white;
    these stand in for the many recordings a large noise corpus would give."""
    if n <= 0:
        return np.zeros(0, np.float32)
    makers = (_transients, _hum, _band_noise)
    out = np.zeros(n, np.float64)
    for i in rng.choice(len(makers), size=int(rng.integers(1, 4)), replace=False):
        layer = makers[int(i)](n, rng, sr)
        out += unit_rms(layer) * 10 ** rng.uniform(-0.5, 0)
    out = unit_rms(out)
    return out if np.any(out) else colored_noise(0.0, n, rng, sr)


def loop_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Loop ``x`` to at least ``n`` samples and crop ``n`` from a random offset."""
    if x.size == 0:
        return np.zeros(n, np.float32)
    reps = -(-(n + x.size) // x.size)
    tiled = np.tile(x, reps)
    start = int(rng.integers(0, x.size))
    return tiled[start:start + n].astype(np.float32)


def babble(sources: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of talkers (each looped/cropped to ``n`` and normalised), float32 [n], unit RMS."""
    if not sources:
        raise ValueError("babble needs at least one source utterance")
    out = np.zeros(n, np.float64)
    for src in sources:
        out += unit_rms(loop_crop(src, n, rng))
    return unit_rms(out)


def noise_signal(kind: str, n: int, rng: np.random.Generator, *, sr: int, talkers: list[np.ndarray] | None = None,
                 folder: "NoiseFolder | None" = None) -> np.ndarray:
    """Unit-RMS noise of ``kind``, float32 [n]: a colour, ``colored`` (random slope), ``texture``, ``babble`` of
    ``talkers`` (clips of other speakers), or a clip of ``folder`` (a loaded noise folder)."""
    if kind in COLORS:
        return colored_noise(COLORS[kind], n, rng, sr)
    if kind == "colored":
        alpha = float(rng.uniform(*COLORED_SLOPES))
        return colored_noise(alpha, n, rng, sr)
    if kind == "texture":
        return texture_noise(n, rng, sr)
    if kind in ("babble", "talker"):  # talker: one competing voice
        return babble(talkers or [], n, rng)
    if folder is None:
        raise ValueError(f"noise {kind!r}: a noise folder needs its loaded NoiseFolder")
    return folder.sample(n, rng)


def snr_gain(clean_power: float, noise_power: float, snr_db: float) -> float:
    """The factor that puts noise of ``noise_power`` at ``snr_db`` below ``clean_power`` (0 when either is 0)."""
    if clean_power <= 0 or noise_power <= 0:
        return 0.0
    return float(np.sqrt(clean_power / (noise_power * 10.0 ** (snr_db / 10.0))))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``noise`` so that power(clean) / power(noise) = ``snr_db`` over the whole clip.

    Returns (noisy, scaled_noise). A silent clean clip gets no noise (the SNR is undefined).
    """
    if noise.shape != clean.shape:
        raise ValueError(f"noise shape {noise.shape} != clean shape {clean.shape}")
    pc = float(np.mean(clean.astype(np.float64) ** 2)) if clean.size else 0.0
    pn = float(np.mean(noise.astype(np.float64) ** 2)) if noise.size else 0.0
    scaled = (noise * snr_gain(pc, pn, snr_db)).astype(np.float32)
    return (clean + scaled).astype(np.float32), scaled


def measured_snr(clean: np.ndarray, noisy: np.ndarray) -> float:
    """Whole-clip SNR of ``noisy`` against ``clean`` in dB."""
    noise = noisy.astype(np.float64) - clean
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2)))


# ----------------------------------------------------------------------------------- config
_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?::|\.\.)\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_snr(text: str | float | int | list) -> tuple[tuple[float, ...], tuple[float, float] | None]:
    """Parse ``-8`` / ``-8,-5,0`` (a list to draw from) / ``-10:10`` or ``-10..10`` (uniform range).

    Returns (choices, range); exactly one of them is non-empty.
    """
    error = UserError(f"--snr {text!r}: expected a number (-8), a list (-8,-5,0) or a range (-10:10)")
    if isinstance(text, (int, float)):
        values = (float(text),)
    elif isinstance(text, (list, tuple)):
        try:
            values = tuple(float(v) for v in text)
        except (TypeError, ValueError):
            raise error from None
    else:
        m = _RANGE.match(str(text))
        if m:
            lo, hi = sorted((float(m.group(1)), float(m.group(2))))
            return (), (lo, hi)
        try:
            values = tuple(float(v) for v in str(text).split(",") if v.strip())
        except ValueError:
            values = ()
    if not values or not all(np.isfinite(values)):  # "nan"/"inf" parse as floats but are no SNR
        raise error
    return values, None


def parse_kinds(noise: str | list[str] | tuple[str, ...], allowed: tuple[str, ...] = BUILTIN_KINDS) -> tuple[str, ...]:
    """``white,babble,DIR:seen`` → the kinds, each one of ``allowed`` or an existing noise folder."""
    kinds = noise if isinstance(noise, (list, tuple)) else [k for k in str(noise).split(",") if k.strip()]
    kinds = tuple(k.strip() for k in kinds)
    if not kinds:
        raise UserError(f"--noise: give at least one of {', '.join(allowed)} or a folder of noise files")
    for k in kinds:
        if k not in allowed and not is_noise_folder(k):
            raise UserError(f"--noise {k!r}: not one of {', '.join(allowed)} and not an existing folder "
                            "of noise files (DIR, DIR:seen or DIR:unseen)")
    return kinds


def parse_snr_range(text: str) -> tuple[float, float]:
    """``-10:15`` (or a list such as ``-8,0``: its min and max) → (low, high) in dB."""
    values, rng = parse_snr(text)
    if rng is not None:
        return float(rng[0]), float(rng[1])
    return float(min(values)), float(max(values))


@dataclass(frozen=True)
class NoiseConfig:
    """How noisy versions are made when a corpus has none.

    kinds: noise kinds drawn uniformly per clip: white, pink, brown, babble, or a folder of noise files.
    snr: SNR choices in dB (drawn uniformly per clip), or ``snr_range`` for a uniform range.
    babble_talkers: how many other-speaker utterances are summed for babble.
    """

    kinds: tuple[str, ...] = ("white",)
    snr: tuple[float, ...] = (-8.0,)
    snr_range: tuple[float, float] | None = None
    babble_talkers: int = 5

    @classmethod
    def parse(cls, noise: str | list[str], snr: str | float = -8.0, babble_talkers: int = 5) -> "NoiseConfig":
        kinds = parse_kinds(noise)
        if int(babble_talkers) < 1:
            raise UserError(f"--babble-talkers {babble_talkers}: babble needs at least 1 talker")
        choices, rng = parse_snr(snr)
        return cls(kinds=kinds, snr=choices, snr_range=rng, babble_talkers=babble_talkers)

    def draw(self, rng: np.random.Generator) -> tuple[str, float]:
        """Pick (kind, snr_db) for one clip."""
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if self.snr_range is not None:
            snr = float(rng.uniform(*self.snr_range))
        else:
            snr = float(self.snr[int(rng.integers(len(self.snr)))])
        return kind, round(snr, 3)

    def describe(self) -> str:
        snr = f"{self.snr_range[0]:g}..{self.snr_range[1]:g} dB" if self.snr_range else \
            ",".join(f"{s:g}" for s in self.snr) + " dB"
        return f"{'+'.join(noise_label(k) for k in self.kinds)} @ {snr}"


@dataclass
class NoiseFolder:
    """A user's folder of noise recordings (or its ``:seen`` / ``:unseen`` part), loaded once (mono)."""

    root: Path
    sample_rate: int
    clips: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, sample_rate: int) -> "NoiseFolder":

        files = noise_files(str(root))
        root = Path(root)
        if not files:
            raise UserError(f"{root}: no noise files (.wav, .flac, .ogg, .mp3, ...) found in this folder")
        clips = []
        for f in files:
            audio = load_mono(f, sample_rate)
            if audio.size > 0 and np.any(audio):
                clips.append(audio)
        if not clips:
            raise UserError(f"{root}: every noise file is empty or silent; add real noise recordings")
        return cls(root, sample_rate, clips)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        clip = self.clips[int(rng.integers(len(self.clips)))]
        return unit_rms(loop_crop(clip, n, rng))
