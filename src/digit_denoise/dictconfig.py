"""``DictConfig``: the one JSON round trip of every config dataclass (models, features)."""

from __future__ import annotations

from dataclasses import asdict, fields

from .errors import UserError


class DictConfig:
    """Mixin for a dataclass: ``to_dict()`` (tuples as lists) and ``from_dict()``.

    ``from_dict`` refuses unknown keys (``strict``) and turns a bad value (a ``ValueError`` or
    ``TypeError`` of the dataclass's checks) into a one-line :class:`UserError` naming the config.
    """

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict | None, strict: bool = True):
        name = cls.__name__.removesuffix("Config")
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown and strict:
            raise UserError(f"{name} config: unknown key(s) {unknown}; known keys: {sorted(known)}")
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, ValueError) as e:
            raise UserError(f"{name} config: {e}") from None
