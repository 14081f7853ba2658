"""Noise: white / pink / brown / babble / a user's noise folder, and mixing at a given SNR.

Every random choice comes from :func:`clip_rng`, a pure function of (seed, clip id, keys), so
a clip's noise can be made on the fly during training and reproduced exactly at evaluation.
SNR is the whole-clip clean-to-noise power ratio.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

BUILTIN_KINDS = ("white", "pink", "brown", "babble")
NOISE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


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
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in NOISE_EXTENSIONS and p.is_file())
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


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    return (x / rms).astype(np.float32) if rms > 0 else x.astype(np.float32)


def colored_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f² power) noise, float32 [n], unit RMS.

    Shaped in the frequency domain, so brown noise has no random-walk drift.
    """
    if n <= 0:
        return np.zeros(0, np.float32)
    white = rng.standard_normal(n)
    if kind == "white":
        return _unit_rms(white)
    exponent = {"pink": 0.5, "brown": 1.0}.get(kind)
    if exponent is None:
        raise ValueError(f"unknown colour {kind!r}")
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0  # keep DC finite; removed below
    spec = spec / f**exponent
    spec[0] = 0.0
    return _unit_rms(np.fft.irfft(spec, n))


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
        out += _unit_rms(loop_crop(src, n, rng))
    return _unit_rms(out)


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``noise`` so that power(clean) / power(noise) = ``snr_db`` over the whole clip.

    Returns (noisy, scaled_noise). A silent clean clip gets no noise (the SNR is undefined).
    """
    if noise.shape != clean.shape:
        raise ValueError(f"noise shape {noise.shape} != clean shape {clean.shape}")
    pc = float(np.mean(clean.astype(np.float64) ** 2)) if clean.size else 0.0
    pn = float(np.mean(noise.astype(np.float64) ** 2)) if noise.size else 0.0
    gain = np.sqrt(pc / (pn * 10.0 ** (snr_db / 10.0))) if pc > 0 and pn > 0 else 0.0
    scaled = (noise * gain).astype(np.float32)
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
        kinds = noise if isinstance(noise, (list, tuple)) else [k for k in str(noise).split(",") if k.strip()]
        kinds = tuple(k.strip() for k in kinds)
        if not kinds:
            raise UserError("--noise: give at least one of white, pink, brown, babble or a folder of noise files")
        for k in kinds:
            if k not in BUILTIN_KINDS and not is_noise_folder(k):
                raise UserError(f"--noise {k!r}: not one of {', '.join(BUILTIN_KINDS)} and not an existing folder "
                                "of noise files (DIR, DIR:seen or DIR:unseen)")
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
        from ..audio import load_audio

        files = noise_files(str(root))
        root = Path(root)
        if not files:
            raise UserError(f"{root}: no noise files ({', '.join(NOISE_EXTENSIONS)}) found in this folder")
        clips = []
        for f in files:
            audio, _ = load_audio(f, sr=sample_rate, mono=True)
            if audio.shape[-1] > 0 and np.any(audio):
                clips.append(audio[0])
        if not clips:
            raise UserError(f"{root}: every noise file is empty or silent; add real noise recordings")
        return cls(root, sample_rate, clips)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        clip = self.clips[int(rng.integers(len(self.clips)))]
        return _unit_rms(loop_crop(clip, n, rng))
