"""The methods a comparison runs: peers by name, models shipped with the package, and run folders."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..audio import load_mono
from ..data.voices import known_speaker
from ..enhance import Denoiser
from ..errors import UserError
from ..pretrained import names as packaged_names
from ..pretrained import packaged_path
from ..progress import progress, say
from ..voice.profile import VoiceProfile, enroll
from . import peers
from .defaults import DEFAULT_METHODS


class Enroller:
    """Voice profiles for a comparison: each clip's speaker enrolled from ``n`` *other* clips of that speaker
    in the same split (never the clip itself), or, for the failure case (``other``), from ``n`` clips of
    another speaker of the split. Choices are a pure function of (seed, clip id); profiles are made once,
    before any method is timed."""

    def __init__(self, rows: list, n: int = 3, seed: int = 0):
        self.n, self.seed = n, seed
        self.by_speaker: dict[tuple[str, str], list] = defaultdict(list)
        for r in rows:
            if known_speaker(r.speaker):
                self.by_speaker[(r.split, r.speaker)].append(r)
        self.profiles: dict[tuple[str, bool], VoiceProfile] = {}

    def can_enrol(self, row) -> bool:
        return len(self.by_speaker.get((row.split, row.speaker), [])) >= 2

    def _pick(self, rows: list, key: str) -> list:
        ranked = sorted(rows, key=lambda r: hashlib.sha256(f"{self.seed}\x1f{key}\x1f{r.id}".encode()).hexdigest())
        return ranked[:self.n]

    def prepare(self, rows: list, other: bool) -> None:
        for r in progress(rows, desc="voice profiles" + (" (another speaker)" if other else ""), unit="clip"):
            if (r.id, other) in self.profiles:
                continue
            if other:
                speakers = sorted(k for k in self.by_speaker if k[0] == r.split and k[1] != r.speaker)
                spk = speakers[int(hashlib.sha256(f"{self.seed}:{r.id}".encode()).hexdigest(), 16) % len(speakers)]
                chosen = self._pick(self.by_speaker[spk], r.id)
            else:
                chosen = self._pick([o for o in self.by_speaker[(r.split, r.speaker)] if o.id != r.id], r.id)
            self.profiles[(r.id, other)] = enroll([(load_mono(o.clean_path, 16000), 16000, o.id) for o in chosen],
                                                  min_speech=0.0)


class ModelMethod:
    """One of our trained runs behind the peers' call shape (a personalised one with the clip's profile,
    or, named ``…@other``, another speaker's: what happens when the wrong voice is given)."""

    is_oracle = False

    def __init__(self, path: Path, name: str, other: bool = False):
        self.path = path
        self.name = name
        self.denoiser = Denoiser.from_checkpoint(path)
        self.personalised, self.other = self.denoiser.personalised, other
        self.enroller: Enroller | None = None
        self.clip: str | None = None  # the clip being denoised (set by the comparison)

    def enhance(self, noisy, sr, clean=None):
        voice = self.enroller.profiles[(self.clip, self.other)] if self.personalised else None
        return np.asarray(self.denoiser.enhance(np.asarray(noisy, np.float32), sr, voice=voice), np.float32)


def parse_list(value: str | Sequence[str] | None, default: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` → ``["a", "b"]`` (blank items dropped); None → the default."""
    if value is None:
        value = default
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def resolve_methods(specs: str | Sequence[str] | None) -> tuple[list[Any], dict[str, str]]:
    """Method specs → (method objects, {skipped name: reason}).

    A spec is a peer name (``peers.PEERS``) or an existing run folder / ``.safetensors`` file (ours,
    named after the folder, or the file's stem); ``SPEC@other`` runs a personalised model with another
    speaker's profile. A peer whose optional package is missing is skipped with a one-line message;
    anything else unknown raises :class:`UserError`.
    """
    names = parse_list(specs, DEFAULT_METHODS)
    if not names:
        raise UserError("--methods: give at least one method, e.g. noisy,wiener,oracle-irm")
    available = peers.available_methods()
    methods: list[Any] = []
    skipped: dict[str, str] = {}
    seen: set[str] = set()
    for spec in names:
        if spec in peers.PEERS:
            if spec in seen:
                continue
            reason = available.get(spec)
            if reason is not None:
                skipped[spec] = reason
                say(f"skipping {spec}: {reason}")
                continue
            methods.append(peers.get_method(spec))
            seen.add(spec)
            continue
        base_spec, _, mode = spec.rpartition("@") if spec.endswith("@other") else (spec, "", "")
        other = mode == "other"
        path = Path(base_spec).expanduser()
        if not path.exists() and packaged_path(base_spec) is not None:  # a model shipped with the package
            if spec not in seen:
                methods.append(ModelMethod(packaged_path(base_spec), spec, other))
                seen.add(spec)
            continue
        if path.exists():
            base = (path.name if path.is_dir() else path.stem) + ("@other" if other else "")
            name, k = base, 2
            while name in seen or name in peers.PEERS:
                name, k = f"{base}-{k}", k + 1
            methods.append(ModelMethod(path, name, other))
            seen.add(name)
            continue
        raise UserError(f"--methods: unknown method '{spec}'; choose from {', '.join([*peers.PEERS, *packaged_names()])} "
                        "or give a run folder / .safetensors file of a trained model")
    blind_other = [m.name for m in methods if isinstance(m, ModelMethod) and m.other and not m.personalised]
    if blind_other:
        raise UserError(f"--methods {blind_other[0]}: @other gives another speaker's voice profile, which only a "
                        "personalised model takes")
    if not methods:
        raise UserError("--methods: none of the requested methods can run here "
                        f"({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return methods, skipped
