"""``DictConfig``: the JSON round trip shared by the waveform models' config dataclasses."""

from __future__ import annotations

from dataclasses import asdict, fields


class DictConfig:
    """Mixin for a dataclass: ``to_dict()`` (tuples as lists) and ``from_dict()`` (unknown keys refused)."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__.removesuffix('Config')} config keys {sorted(unknown)}")
        return cls(**d)
