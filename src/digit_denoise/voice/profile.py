"""Voice profiles: the speaker embedding of a few seconds of one voice, kept in a small JSON file.

``digit-denoise voice enroll a.wav b.flac -o me.voice`` (or :func:`enroll`) hears the speech of each
recording (any format, rate and channel count: channels are mixed down), embeds each one with the
speaker encoder and averages them, weighted by their seconds of speech. Under 1 s of speech in all is
refused; under 2 s, or recordings whose voices disagree (a cosine similarity under 0.75 between two of
them: the same voice gives ~0.9, two voices ~0.7), are kept with a warning.

A profile file is JSON (no pickle)::

    {"format": "digit-denoise-voice", "format_version": 1, "encoder": "resemblyzer-0.1.4-int8",
     "embedding": [256 numbers, L2 norm 1], "speech_seconds": 6.2, "recordings": 3,
     "consistency": 0.91, "digit_denoise": "0.1.0"}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import AUDIO_EXTENSIONS, atomic_path, load_audio
from ..errors import UserError
from ..version import __version__
from .encoder import embed

FORMAT = "digit-denoise-voice"
FORMAT_VERSION = 1
ENCODER = "resemblyzer-0.1.4-int8"
DIM = 256
MIN_SPEECH_S = 1.0  # refused below this
GOOD_SPEECH_S = 2.0  # a warning below this
AGREE = 0.7  # a recording less similar than this to the others is probably another voice
NARROWBAND_HZ = 16000  # a warning below this rate: FSDD's 8 kHz voices all look alike (similarity 0.75-0.89)
MAX_PROFILE_BYTES = 64 * 1024


@dataclass
class VoiceProfile:
    """A speaker embedding and what it was made of."""

    embedding: np.ndarray  # [256] float32, L2 norm 1
    speech_seconds: float
    recordings: int
    consistency: float  # the lowest cosine similarity of a recording to the mean of the others (1.0 for one)
    warnings: list[str] = field(default_factory=list)  # said once, when it was made

    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": ENCODER,
                "embedding": [round(float(v), 7) for v in self.embedding], "speech_seconds": round(self.speech_seconds, 2),
                "recordings": self.recordings, "consistency": round(self.consistency, 4), "digit_denoise": __version__}

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the profile (atomically; an existing file only with ``overwrite``)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise UserError(f"{path}: already exists; pass --overwrite or choose another -o")
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def enroll(recordings: Sequence[tuple[np.ndarray, int, str]], min_speech: float = MIN_SPEECH_S) -> VoiceProfile:
    """A profile from ``(audio [T] or [C, T], sample rate, name)`` recordings of one voice (refused under
    ``min_speech`` seconds of speech; evaluation enrols from whatever a test speaker has)."""
    if not recordings:
        raise UserError("voice enroll: give at least one recording of the voice")
    embs, secs, names, narrow = [], [], [], []
    for x, sr, name in recordings:
        x = np.asarray(x, np.float32)
        mono = x.mean(0) if x.ndim == 2 else x
        if not np.isfinite(mono).all():
            raise UserError(f"{name}: contains NaN or infinite samples")
        e, s = embed(mono, int(sr))
        if s > 0:
            embs.append(e)
            secs.append(s)
            names.append(name)
            if sr < NARROWBAND_HZ:
                narrow.append(f"{name} ({sr} Hz)")
    total = float(sum(secs))
    if total < max(min_speech, 1e-9):
        said = "no speech" if total == 0 else f"only {total:.1f} s of speech"
        raise UserError(f"voice enroll: {said} in {len(recordings)} recording(s); a profile needs at least "
                        f"{MIN_SPEECH_S:g} s (record a few spoken words, ~{GOOD_SPEECH_S:g} s or more)")
    mean = np.average(np.stack(embs), axis=0, weights=np.asarray(secs))
    mean = (mean / np.linalg.norm(mean)).astype(np.float32)
    # each recording against the mean of the others: single words are short, so two of one voice can score
    # ~0.6 pairwise, while against the rest one voice stays >= ~0.73 and an odd one out falls to ~0.45-0.74
    whole = np.sum(embs, axis=0)  # the others' mean points the way of (the sum − this one)
    apart = [(similarity(e, whole - e), n) for e, n in zip(embs, names)] if len(embs) > 1 else [(1.0, "")]
    low = min(apart)
    warnings = []
    if total < GOOD_SPEECH_S:
        warnings.append(f"only {total:.1f} s of speech: a profile of {GOOD_SPEECH_S:g} s or more is more reliable")
    if low[0] < AGREE:
        warnings.append(f"{low[1]} may be another voice (similarity {low[0]:.2f} to the other recordings; one voice "
                        "gives ~0.9): enroll one voice only")
    if narrow:
        warnings.append(f"{narrow[0]}{' and others' if len(narrow) > 1 else ''}: sampled under "
                        f"{NARROWBAND_HZ // 1000} kHz, where voices sound alike to the speaker encoder and the "
                        "personalised model can do worse than the blind one; enroll recordings of 16 kHz or more")
    return VoiceProfile(mean, total, len(embs), float(low[0]), warnings)


def enroll_files(paths: Sequence[str | os.PathLike]) -> VoiceProfile:
    """A profile from audio files (any format libsndfile reads, any rate and channel count)."""
    recs = []
    for p in paths:
        x, sr = load_audio(p)
        recs.append((x, sr, Path(p).name))
    return enroll(recs)


def load_profile(path: str | os.PathLike) -> VoiceProfile:
    """Read and check a profile file: JSON of the right format, 256 finite numbers of norm ~1."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_PROFILE_BYTES:
            raise UserError(f"{path}: too large for a voice profile (a profile is ~6 kB)")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such voice profile; make one with 'digit-denoise voice enroll'") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UserError(f"{path}: neither a voice profile (not JSON) nor audio of a format read here "
                        f"({', '.join(AUDIO_EXTENSIONS)}); make a profile with 'digit-denoise voice enroll'") from None
    return profile_from_json(data, str(path))


def profile_from_json(data, where: str) -> VoiceProfile:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{where}: not a voice profile (no \"format\": \"{FORMAT}\")")
    if data.get("format_version") != FORMAT_VERSION or data.get("encoder") != ENCODER:
        raise UserError(f"{where}: a voice profile of another version ({str(data.get('encoder'))[:40]}); enroll again")
    emb = data.get("embedding")
    ok = isinstance(emb, list) and len(emb) == DIM and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in emb)
    vec = np.asarray(emb, np.float32) if ok else None
    if vec is None or not 0.9 < float(np.linalg.norm(vec)) < 1.1:
        raise UserError(f"{where}: a damaged voice profile (the embedding must be {DIM} numbers of norm 1); enroll again")
    num = lambda k, d: float(data[k]) if isinstance(data.get(k), (int, float)) and not isinstance(data.get(k), bool) else d  # noqa: E731
    return VoiceProfile(vec / np.linalg.norm(vec), num("speech_seconds", 0.0), int(num("recordings", 1)),
                        num("consistency", 1.0))


def load_voice(spec: str | os.PathLike | Sequence[str | os.PathLike] | VoiceProfile) -> VoiceProfile:
    """A profile from what a user gives: a profile, a profile file, or audio files (a list or a comma list)."""
    if isinstance(spec, VoiceProfile):
        return spec
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if len(items) == 1 and isinstance(items[0], str) and "," in items[0] and not Path(items[0]).exists():
        items = [p for p in items[0].split(",") if p]
    if len(items) == 1 and Path(items[0]).suffix.lower() not in AUDIO_EXTENSIONS:
        return load_profile(items[0])
    return enroll_files(items)
