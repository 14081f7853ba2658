"""The methods a comparison runs: peers by name, models shipped with the package, and run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..enhance import Denoiser
from ..errors import UserError
from ..pretrained import names as packaged_names
from ..pretrained import packaged_path
from ..progress import say
from . import peers
from .defaults import DEFAULT_METHODS


class ModelMethod:
    """One of our trained runs behind the peers' call shape."""

    is_oracle = False

    def __init__(self, path: Path, name: str):
        self.path = path
        self.name = name
        self.denoiser = Denoiser.from_checkpoint(path)

    def enhance(self, noisy, sr, clean=None):
        return np.asarray(self.denoiser.enhance(np.asarray(noisy, np.float32), sr), np.float32)


def parse_list(value: str | Sequence[str] | None, default: str | Sequence[str]) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` → ``["a", "b"]`` (blank items dropped); None → the default."""
    if value is None:
        value = default
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()]


def resolve_methods(specs: str | Sequence[str] | None) -> tuple[list[Any], dict[str, str]]:
    """Method specs → (method objects, {skipped name: reason}).

    A spec is a peer name (``peers.PEERS``) or an existing run folder / ``.safetensors`` file (ours,
    named after the folder, or the file's stem). A peer whose optional package is missing is skipped
    with a one-line message; anything else unknown raises :class:`UserError`.
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
        path = Path(spec).expanduser()
        if not path.exists() and packaged_path(spec) is not None:  # a model shipped with the package
            if spec not in seen:
                methods.append(ModelMethod(packaged_path(spec), spec))
                seen.add(spec)
            continue
        if path.exists():
            base = path.name if path.is_dir() else path.stem
            name, k = base, 2
            while name in seen or name in peers.PEERS:
                name, k = f"{base}-{k}", k + 1
            methods.append(ModelMethod(path, name))
            seen.add(name)
            continue
        raise UserError(f"--methods: unknown method '{spec}'; choose from {', '.join([*peers.PEERS, *packaged_names()])} "
                        "or give a run folder / .safetensors file of a trained model")
    if not methods:
        raise UserError("--methods: none of the requested methods can run here "
                        f"({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return methods, skipped
