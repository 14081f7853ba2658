"""Synthetic spoken digits with espeak-ng (optional extra ``[synth]``, GPL-3.0-or-later).

``synthesize_corpus(out_dir, speakers, takes, seed)`` writes an AudioMNIST-layout corpus:
``out_dir/NN/D_NN_I.wav`` (digit_speaker_take, mono PCM_16 at espeak-ng's 22050 Hz) plus
``out_dir/audioMNIST_meta.txt`` (JSON keyed by speaker id, the real corpus's keys).

Each pseudo-speaker is drawn from ``(seed, speaker index)``: an English accent (language voice),
a voice variant (m1..m8 male, f1..f5 and a few named female variants), base pitch, pitch range,
speaking rate and output level. Each take adds small rate/pitch jitter.

Determinism: espeak-ng keeps synthesiser state (oscillator phase, flutter, noise generator)
across calls inside one process, so repeating a call in the same process does *not* give the
same samples. A fresh process replaying the same call sequence does. So every speaker is
rendered in its own freshly spawned worker process, with espeak-ng's random seed fixed per
utterance: same seed and arguments → byte-identical files, in any process, and a speaker's
audio does not depend on how many other speakers (or later takes) are made. It does depend on
the ``digits`` list, which sets the order of calls within a speaker's process.

The low-level :class:`Espeak` wraps libespeak-ng through ctypes (one instance per process:
:func:`get_espeak`).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..audio import write_audio
from ..errors import UserError
from ..progress import progress
from .corpora import DIGIT_WORDS

MISSING_EXTRA = ("synthetic speech needs the optional extra: pip install 'digit-denoise[synth]' "
                 "(espeak-ng, GPL-3.0-or-later)")

# English language voices in the bundled espeak-ng data (lang/gmw/...) → accent label for the meta.
LANGUAGES = (
    ("en", "british"),
    ("en-us", "american"),
    ("en-gb-x-rp", "british (received pronunciation)"),
    ("en-gb-scotland", "scottish"),
    ("en-029", "caribbean"),
    ("en-us-nyc", "american (new york)"),
    ("en-gb-x-gbclan", "british (lancashire)"),
    ("en-gb-x-gbcwmd", "british (west midlands)"),
)
# Voice variants (voices/!v/...) by gender; robotic/whisper/novelty variants are left out.
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Lee")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5", "Andrea", "Annie", "belinda", "linda", "steph2")

# espeak-ng speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.c_void_p)


def _loader():
    try:
        import espeakng_loader
    except ImportError:
        raise UserError(MISSING_EXTRA) from None
    return espeakng_loader


class Espeak:
    """libespeak-ng via ctypes, synchronous mode (samples collected by a callback).

    Use :func:`get_espeak` rather than constructing it: the library is a process-wide singleton.
    """

    def __init__(self):
        loader = _loader()
        data = Path(loader.get_data_path())
        self.data_path = data
        try:
            lib = ctypes.cdll.LoadLibrary(str(loader.get_library_path()))
        except OSError as e:
            raise UserError(f"could not load espeak-ng ({e}); reinstall the [synth] extra") from None
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        # Never pass NULL here: the library then calls exit() on a missing data folder.
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data.parent).encode(),
                                   _ESPEAK_INITIALIZE_DONT_EXIT)
        if sr <= 0:
            raise UserError(f"espeak-ng failed to initialise with data {data} (code {sr}); "
                            "reinstall the [synth] extra")
        self.sample_rate = int(sr)
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._on_samples)  # keep a reference: C holds a pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
        try:
            self._libc = ctypes.CDLL(None)
        except OSError:  # pragma: no cover - non-POSIX
            self._libc = None
        self.variants = sorted(p.name for p in (data / "voices" / "!v").iterdir())
        self._lock = threading.Lock()

    def _on_samples(self, wav, numsamples, events) -> int:
        if wav and numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = continue

    def synth(self, text: str, voice: str = "en", variant: str | None = "m3", rate: int = 175,
              pitch: int = 50, pitch_range: int = 50, volume: int = 100, noise_seed: int = 1) -> np.ndarray:
        """Speak ``text``; returns float32 mono samples in [-1, 1] at :attr:`sample_rate`.

        ``voice`` is an espeak-ng language voice (en, en-us...), ``variant`` a file of
        ``voices/!v`` (m1..m8, f1..f5...; None for the language's default). rate in words per
        minute (80..450), pitch and pitch_range 0..100, volume 0..200. ``noise_seed`` seeds
        espeak-ng's noise generator (breath/aspiration) for this call.
        """
        if variant and variant not in self.variants:  # espeak-ng silently ignores unknown variants
            raise ValueError(f"unknown espeak-ng voice variant {variant!r}")
        name = f"{voice}+{variant}" if variant else voice
        with self._lock:
            lib = self._lib
            if lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise ValueError(f"unknown espeak-ng voice {name!r}")
            # set every parameter on every call: espeak-ng keeps them between calls
            for param, value in ((_RATE, rate), (_VOLUME, volume), (_PITCH, pitch), (_RANGE, pitch_range)):
                lib.espeak_SetParameter(param, int(round(value)), 0)
            if self._set_seed is not None:
                self._set_seed(int(noise_seed))
            if self._libc is not None:
                self._libc.srand(ctypes.c_uint(int(noise_seed) & 0xFFFFFFFF))
            self._chunks = []
            buf = text.encode("utf-8") + b"\0"
            err = lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
        if not chunks:
            return np.zeros(0, np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0)


_ESPEAK: Espeak | None = None
_ESPEAK_LOCK = threading.Lock()


def get_espeak() -> Espeak:
    """The process's one :class:`Espeak` (created on first use)."""
    global _ESPEAK
    with _ESPEAK_LOCK:
        if _ESPEAK is None:
            _ESPEAK = Espeak()
        return _ESPEAK


# ------------------------------------------------------------------------------ pseudo-speakers
@dataclass
class SpeakerSpec:
    speaker: str  # zero-padded id, "01"
    voice: str  # espeak-ng language voice, e.g. "en-gb-scotland"
    variant: str  # espeak-ng variant, e.g. "f2"
    gender: str  # "male" / "female" (from the variant)
    accent: str  # label for the meta file
    pitch: int  # base pitch 0..100
    pitch_range: int  # intonation range 0..100
    rate: int  # words per minute
    level_db: float  # peak level of every clip, dBFS
    age: int  # plausible synthetic age for the meta file


def _rng(seed: int, *keys) -> np.random.Generator:
    text = "\x1f".join(["synth", str(int(seed)), *map(str, keys)])
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))


def _available(data_path: Path) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Languages and male/female variants present in the bundled espeak-ng data."""
    langs = {p.name.lower() for p in (data_path / "lang").rglob("*") if p.is_file()}
    variants = {p.name for p in (data_path / "voices" / "!v").iterdir()}
    return ([(v, a) for v, a in LANGUAGES if v in langs],
            [v for v in MALE_VARIANTS if v in variants],
            [v for v in FEMALE_VARIANTS if v in variants])


def speaker_specs(speakers: int, seed: int, data_path: Path) -> list[SpeakerSpec]:
    """Deterministic pseudo-speakers 01..NN for ``seed`` (genders alternate with a random start)."""
    langs, male, female = _available(data_path)
    if not langs or not male or not female:
        raise UserError(f"{data_path}: espeak-ng data lacks English voices or variants; "
                        "reinstall the [synth] extra")
    first_female = bool(_rng(seed, "gender").integers(2))
    specs = []
    for i in range(speakers):
        r = _rng(seed, "speaker", i)
        female_ = (i % 2 == 0) == first_female
        variant = str(r.choice(female if female_ else male))
        voice, accent = langs[int(r.integers(len(langs)))]
        specs.append(SpeakerSpec(
            speaker=f"{i + 1:02d}", voice=voice, variant=variant,
            gender="female" if female_ else "male", accent=accent,
            pitch=int(r.integers(25, 76)), pitch_range=int(r.integers(20, 81)),
            rate=int(r.integers(140, 211)), level_db=round(float(r.uniform(-12.0, -3.0)), 2),
            age=int(r.integers(19, 66))))
    return specs


def trim_silence(x: np.ndarray, sr: int, threshold_db: float = -40.0, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing frames quieter than ``threshold_db`` below the loudest 10 ms frame,
    keeping ``pad_s`` of audio (or zeros) either side."""
    hop = max(1, sr // 100)
    n = len(x) // hop
    if n == 0:
        return x.astype(np.float32)
    rms = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (threshold_db / 20))[0]
    if loud.size == 0:
        return x.astype(np.float32)
    pad = int(round(pad_s * sr))
    start, end = loud[0] * hop, min(len(x), (loud[-1] + 1) * hop)
    seg = x[max(0, start - pad): end + pad]
    before, after = max(0, pad - start), max(0, end + pad - len(x))
    return np.pad(seg, (before, after)).astype(np.float32)


def _render_speaker(job: tuple[dict, int, int, tuple[int, ...]]) -> tuple[int, list[tuple[int, int, np.ndarray]]]:
    """Worker (fresh process per speaker): all takes × digits of one speaker."""
    spec_d, seed, takes, digits = job
    spec = SpeakerSpec(**spec_d)
    es = get_espeak()
    out = []
    for take in range(takes):
        for d in digits:
            r = _rng(seed, "take", spec.speaker, d, take)
            rate = int(round(spec.rate * r.uniform(0.95, 1.05)))
            pitch = int(np.clip(spec.pitch + r.integers(-3, 4), 0, 100))
            rng_ = int(np.clip(spec.pitch_range + r.integers(-3, 4), 0, 100))
            x = es.synth(DIGIT_WORDS[d], voice=spec.voice, variant=spec.variant, rate=rate, pitch=pitch,
                         pitch_range=rng_, volume=100, noise_seed=int(r.integers(1, 2**31 - 1)))
            x = trim_silence(x, es.sample_rate)
            peak = float(np.max(np.abs(x))) if x.size else 0.0
            if peak > 0:
                x = x * (10 ** (spec.level_db / 20) / peak)
            out.append((d, take, x.astype(np.float32)))
    return es.sample_rate, out


def _meta(specs: list[SpeakerSpec], seed: int) -> dict:
    meta = {}
    for s in specs:
        r = _rng(seed, "meta", s.speaker)
        date = (f"{int(r.integers(17, 25)):02d}-{int(r.integers(1, 13)):02d}-{int(r.integers(1, 29)):02d}-"
                f"{int(r.integers(8, 19)):02d}-{int(r.integers(60)):02d}-{int(r.integers(60)):02d}")
        meta[s.speaker] = {
            "accent": s.accent,
            "age": s.age,
            "gender": s.gender,
            "native speaker": "yes",
            "origin": f"synthetic, espeak-ng voice {s.voice}+{s.variant}",
            "recording date": date,
            "recording room": "synthetic (espeak-ng)",
            "synth": {k: v for k, v in asdict(s).items() if k not in ("speaker", "gender", "accent", "age")},
        }
    return meta


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: folder exists and is not empty; pass --overwrite or choose another --out")


def synthesize_corpus(out_dir: str | os.PathLike, speakers: int = 30, takes: int = 10, seed: int = 0,
                      digits: Iterable[int] = range(10), overwrite: bool = False,
                      workers: int | None = None) -> dict:
    """Write an AudioMNIST-layout corpus of synthetic spoken digits; returns a summary.

    Files: ``out_dir/NN/D_NN_I.wav`` (speakers 01..NN, takes 0..takes-1) and
    ``out_dir/audioMNIST_meta.txt``. Built in a temporary folder beside ``out_dir`` and renamed
    into place at the end, so an interrupted run leaves nothing half-made. ``workers`` caps the
    number of worker processes (default: CPU count, at most 8).
    Returns ``{"speakers", "files", "sample_rate", "total_seconds", "out_dir"}``.
    """
    loader = _loader()
    out = Path(out_dir)
    digits = tuple(int(d) for d in digits)
    if speakers < 1 or speakers > 99:
        raise UserError(f"--speakers must be 1..99 (AudioMNIST ids are two digits), got {speakers}")
    if takes < 1:
        raise UserError(f"--takes must be at least 1, got {takes}")
    if not digits or any(d not in range(10) for d in digits):
        raise UserError(f"digits must be in 0..9, got {list(digits)}")
    _check_out_dir(out, overwrite)
    specs = speaker_specs(speakers, seed, Path(loader.get_data_path()))

    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as e:
        raise UserError(f"{out}: cannot write there ({e.strerror}); choose a writable folder") from None

    n_files = speakers * takes * len(digits)
    total_samples, sr = 0, 0
    try:
        jobs = [(asdict(s), seed, takes, digits) for s in specs]
        n_proc = max(1, min(len(jobs), workers or min(os.cpu_count() or 1, 8)))
        # a fresh process per speaker: espeak-ng carries state between calls (see module doc)
        with mp.get_context("spawn").Pool(n_proc, maxtasksperchild=1) as pool, \
                progress(total=n_files, desc="synthesising digits", unit="file") as bar:
            for spec, (sr, clips) in zip(specs, pool.imap(_render_speaker, jobs)):
                spk_dir = tmp / spec.speaker
                spk_dir.mkdir()
                for d, take, x in clips:
                    write_audio(spk_dir / f"{d}_{spec.speaker}_{take}.wav", x, sr, subtype="PCM_16")
                    total_samples += len(x)
                    bar.update(1)
        meta_text = json.dumps(_meta(specs, seed), indent=2, sort_keys=True) + "\n"
        (tmp / "audioMNIST_meta.txt").write_text(meta_text, encoding="utf-8")
        # move into place (re-check: the folder may have appeared meanwhile)
        _check_out_dir(out, overwrite)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            os.replace(out, old / "x")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"speakers": speakers, "files": n_files, "sample_rate": sr,
            "total_seconds": total_samples / sr if sr else 0.0, "out_dir": str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m digit_denoise.data.synth", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder (AudioMNIST layout)")
    p.add_argument("--speakers", type=int, default=30)
    p.add_argument("--takes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    try:
        s = synthesize_corpus(a.out, speakers=a.speakers, takes=a.takes, seed=a.seed, overwrite=a.overwrite)
    except UserError as e:
        print(f"digit-denoise: error: {e}", file=sys.stderr)
        return 2
    print(f"synthesised {s['files']} clips of {s['speakers']} speakers "
          f"({s['total_seconds'] / 60:.1f} min at {s['sample_rate']} Hz) into {s['out_dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
