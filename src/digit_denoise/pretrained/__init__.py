"""The models shipped inside the package: one registry, read by every place that finds a model by name.

Each entry names its files in this folder (``{stem}.safetensors`` + ``{stem}.json``), its model family,
its licence, a one-line description and the recipe file(s) that made it (in the repository's ``recipes/``
folder; published weights have none). :func:`..checkpoint.resolve` turns a name into its files; the
``Denoiser``, ``serve``, ``compare`` and ``--model``'s help list these names; ``tools/ship.py`` writes
the files. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
PERSONALISED = "voice"  # the shipped personalised model (``denoise --voice`` without ``--model``)


@dataclass(frozen=True)
class Packaged:
    """One shipped model."""

    name: str  # what users type: --model NAME
    stem: str  # file stem in this folder
    family: str  # model family (digit_denoise.models)
    licence: str  # of the weights
    description: str  # one line
    recipes: tuple[str, ...] = ()  # recipe files (repository paths), first stage first; () for published weights

    @property
    def weights(self) -> Path:
        return FOLDER / f"{self.stem}.safetensors"

    @property
    def config(self) -> Path:
        return FOLDER / f"{self.stem}.json"


_FSDD = "CC BY-SA 4.0 (a derivative of the Free Spoken Digit Dataset)"
_DEFAULT_CHAIN = tuple(f"recipes/default/{s}.toml" for s in ("1-fast-ft", "2-fast-ft2", "3-fast-ft4", "4-fast-ft5",
                                                              "5-fast-nr2"))
REGISTRY: dict[str, Packaged] = {p.name: p for p in (
    Packaged("default", "default", "masknet", f"{_FSDD}; int8 weights",
             "the default: `best`'s network at 14,000 steps after three guard stages against `fast-nr2`, with a "
             "25 dB attenuation limit: ahead of `fast-nr2` in SI-SDR in every test condition (RTF ~0.008)",
             ("recipes/long/l240-s14000.toml", "recipes/long/l240-guard3.toml", "recipes/long/l240-guard4.toml",
              "recipes/long/l240-guard5.toml")),
    Packaged("best", "best", "masknet", f"{_FSDD}; int8 weights",
             "the highest mean quality measured here: a 240-channel network trained from scratch for 22,000 steps; "
             "0.5 dB ahead of the default on average, 0.9 dB behind on babble at -8 dB (RTF ~0.008)",
             ("recipes/long/l240.toml",)),
    Packaged("fast-nr2", "fast-nr2", "masknet", _FSDD,
             "the small `fast` network fine-tuned on speech16k + FSDD in five stages (RTF ~0.006); the default "
             "until the guarded long run replaced it, and the model the guard stages may not fall below",
             ("recipes/fast.toml", *_DEFAULT_CHAIN)),
    Packaged("fast", "fast", "masknet", _FSDD,
             "`fast-nr2`'s network trained on FSDD's four training speakers only", ("recipes/fast.toml",)),
    Packaged("gtcrn", "gtcrn-dns3", "gtcrn", "MIT (the GTCRN authors' DNS3 weights; LICENSE-gtcrn)",
             "GTCRN as published, trained on DNS3 by its authors"),
    Packaged("ul-unas", "ul-unas-dns3", "ul-unas", "MIT (the UL-UNAS authors' DNS3 weights; LICENSE-ul-unas)",
             "UL-UNAS as published, trained on DNS3 by its authors"),
    Packaged("gtcrn-ft", "gtcrn-ft", "gtcrn", f"{_FSDD}; initialised from GTCRN's DNS3 weights (MIT)",
             "GTCRN made non-causal and fine-tuned at low SNR on speech16k + FSDD (RTF ~0.035)",
             ("recipes/gtcrn-ft.toml",)),
    Packaged("ul-unas-ft", "ul-unas-ft", "ul-unas", f"{_FSDD}; initialised from UL-UNAS's DNS3 weights (MIT)",
             "UL-UNAS fine-tuned at low SNR on speech16k + FSDD (RTF ~0.048)", ("recipes/ul-unas-ft.toml",)),
    Packaged(PERSONALISED, "voice", "masknet", f"{_FSDD}; int8 weights",
             "personalised: `fast-nr2`'s network + FiLM from a voice profile; keeps that voice, removes other "
             "talkers (RTF ~0.005)", ("recipes/fast.toml", *_DEFAULT_CHAIN, "recipes/voice/voice.toml")),
)}


def names() -> list[str]:
    """The registered names, in registry order."""
    return list(REGISTRY)


def entry(name: str) -> Packaged | None:
    return REGISTRY.get(name)


def packaged_path(name: str) -> Path | None:
    """The ``.safetensors`` of a registered name if this install has it, else None."""
    p = REGISTRY.get(name)
    return p.weights if p is not None and p.weights.is_file() else None


def available() -> list[str]:
    """The registered names whose files this install has."""
    return [n for n in REGISTRY if packaged_path(n) is not None]


def help_text() -> str:
    """``name: description; …`` for ``--model``'s help."""
    return "; ".join(f"{p.name} ({p.description})" for p in REGISTRY.values())
