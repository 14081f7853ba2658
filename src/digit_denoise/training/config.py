"""What defines a training run: :class:`TrainConfig`, its recipe files and presets, and the ``train`` flags.

One schema: every option is a :class:`TrainConfig` field with its type, default and help (the comment
beside it). Values come, lowest first, from the field defaults, a preset (a packaged recipe file in
``presets/``), a recipe file (``--config recipes/NAME.toml``) and the command-line flags. Each value,
whatever its source (a flag's text, a TOML value, a saved ``config.json``), goes through the one parser
of its field (:data:`PARSERS`), which types and checks it; a bad value is a one-line :class:`UserError`
naming the key and where it came from. The ``train`` flags are made from the same fields
(:mod:`.flags`). No torch here: ``digit-denoise --help`` builds them without loading the training stack.

A recipe file is flat TOML whose keys are the field names::

    preset = "fast"                 # optional: start from a preset's values
    extends = "stage-base.toml"     # optional: start from another recipe (relative to this file)
    manifest = ["data/speech16k.csv", "data/fsdd.csv"]
    snr = [-12, 10]
    noise = ["texture", "white", "babble", "../shared/data/noise16k:seen"]

Paths inside a recipe (manifests, noise folders, ``init``, ``out``) are relative to the folder the
command runs in, as on the command line.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import tomllib

from ..errors import UserError


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json in the run folder)."""

    manifest: tuple[str, ...] = ()  # manifest CSV(s) from `data prepare`; waveform models take several, a.csv,b.csv (their union)
    out: str = ""  # run folder, e.g. runs/seed
    preset: str = "seed"  # a name from PRESETS; explicit options override it
    recipe: str = ""  # the recipe file (--config) the run was made from, recorded in the run and the shipped model
    model: str = "seed"  # model family (see python -m digit_denoise.models)
    model_config: dict = field(default_factory=dict)  # JSON overrides of the model's config, e.g. '{"channels": 64}'
    init: str = ""  # start from these weights (run folder, model file or packaged name such as gtcrn): fine-tuning
    loss: str = "mse"  # training loss: mse (seed); sisdr, mrstft, sisdr+mrstft, spec+sisdr (waveform)
    lr: float = 2e-4  # Adam learning rate
    batch_size: int = 128  # global batch size
    epochs: int = 6  # passes over the training split
    steps: int = 0  # planned optimiser steps of the whole run, across resumes (0 = epochs × steps per epoch)
    max_steps: int = 0  # stop after this many steps (0 = no limit); the schedule still spans the planned run
    max_minutes: float = 0.0  # stop after this many minutes of training, across resumes (0 = no limit)
    val_every: int = 75  # validate (and save last/best) every N steps
    save_every: int = 0  # also save `last` every N steps (0 = at validation and every 5 minutes)
    limit: int = 0  # use only N training clips (0 = all)
    val_limit: int = 0  # use only N validation clips (0 = all)
    seed: int = 0  # one seed for torch, numpy and random (and the data order)
    fresh_noise: bool = False  # seed models: new noise (and, with augment, a new voice/mic) every epoch; evaluation noise stays fixed
    threads: int = 0  # torch CPU threads (0 = torch's default)
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    schedule: str = "constant"  # learning-rate schedule: constant or cosine (to 5 % at the last planned step)
    warmup: int = 0  # steps of linear learning-rate warm-up from 0 before the schedule (0 = none)
    clip_grad: float = 0.0  # clip the gradient norm to this value (0 = off)
    ema: float = 0.0  # decay of a moving average of the weights, validated and saved as best (0 = off)
    no_harm: float = 0.0  # waveform models: weight of a penalty on the dB of SI-SDR a clip loses against its noisy input (0 = off)
    no_regress: float = 0.0  # weight of a penalty on the dB of SI-SDR a clip loses against the teacher's output: --teacher, else the --init model (0 = off)
    teacher: str = ""  # the model no clip may fall below with --no-regress (a blind waveform model; default: the --init weights)
    noise: tuple[str, ...] = ("white", "pink", "brown", "colored", "babble")  # waveform models: kinds (white, pink, brown, colored, texture, babble) and/or folders (DIR, DIR:seen); repeat one to draw it more often
    snr: tuple[float, float] = (-10.0, 15.0)  # waveform models: SNR range LO:HI of the training mixtures (dB)
    snr_focus: tuple[float, float, float] | None = None  # waveform models: LO:HI@SHARE draws that share of the SNRs from LO…HI dB
    segment: float = 1.0  # waveform models: seconds per training window
    augment: bool = True  # waveform models (seed models with fresh-noise): spectral tilt, speed/pitch, EQ (and band limits) on the clean speech
    speed: tuple[float, float] = (0.85, 1.15)  # waveform models: speed/pitch factor range LO:HI of the augmentation
    eq_db: float = 0.0  # waveform models: random peaking EQ of the clean speech, ±dB (0 = off)
    babble_talkers: tuple[int, int] = (3, 7)  # waveform models: talkers per babble mixture, LO:HI
    precision: str = "auto"  # auto (bf16 autocast on a CUDA GPU that has it, else fp32), fp32 or bf16
    compile: bool = False  # torch.compile the model (slow first steps; measured in make bench)
    channels_last: bool = False  # channels-last memory format (2-D seed models)


# Options that may change when a run is resumed (they do not change what a step computes).
RESUMABLE_CHANGES = {"epochs", "max_steps", "max_minutes", "val_every", "save_every", "threads", "device", "out",
                     "manifest", "compile", "channels_last", "precision", "recipe"}
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("constant", "cosine")
PRESET_DIR = Path(__file__).resolve().parent / "presets"
RECIPE_KEYS = {"extends", "description"}  # keys of a recipe file that are not TrainConfig fields


# ------------------------------------------------------------------------------ one parser per field
def _numbers(value: Any, kind: type, n: int, example: str) -> tuple:
    """``"a:b"`` / ``"a..b"`` / ``"a"`` / ``[a, b]`` / ``a`` → a tuple of ``n`` numbers of ``kind``."""
    if isinstance(value, str):
        parts = [p for p in re.split(r":|\.\.(?=-?\d)", value.strip()) if p != ""]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [value]
    else:
        raise ValueError(f"expected {example}")
    if len(parts) == 1:
        parts = parts * n
    try:
        out = tuple(kind(p) if kind is float else _int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"expected {example}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(f"expected {example}")
    return out


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(v, float) and not v.is_integer():
        raise ValueError("not a whole number")
    return int(v)


def _number(kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
            hi_open: bool = False, example: str = "") -> Callable[[Any], Any]:
    def parse(v: Any):
        try:
            x = _int(v) if kind is int else float(v)
        except (TypeError, ValueError):
            raise ValueError(f"expected {'a whole number' if kind is int else 'a number'}{example}") from None
        if isinstance(v, bool) or not math.isfinite(x):
            raise ValueError(f"expected {'a whole number' if kind is int else 'a finite number'}{example}")
        if lo is not None and (x <= lo if lo_open else x < lo):
            raise ValueError(f"must be {'>' if lo_open else '≥'} {lo:g}{example}")
        if hi is not None and (x >= hi if hi_open else x > hi):
            raise ValueError(f"must be {'<' if hi_open else '≤'} {hi:g}{example}")
        return x
    return parse


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if v not in options:
            raise ValueError(f"choose one of {', '.join(options)}")
        return v
    return parse


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _flag(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError("expected true or false")


def _names(v: Any) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → ("a", "b") (blank entries dropped)."""
    items = v.split(",") if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise ValueError("expected a comma list or a list of strings")
    return tuple(x.strip() for x in items if x.strip())


def _noise(v: Any) -> tuple[str, ...]:
    kinds = _names(v)
    if not kinds:
        raise ValueError("give at least one noise kind (white, pink, brown, colored, texture, babble) or folder")
    return kinds


def _range(kind: type, lo: float, hi: float, example: str) -> Callable[[Any], tuple]:
    def parse(v: Any) -> tuple:
        a, b = _numbers(v, kind, 2, example)
        if not lo <= a <= b <= hi:
            raise ValueError(f"expected LO:HI with {lo:g} ≤ LO ≤ HI ≤ {hi:g}, e.g. {example.split('e.g. ')[-1]}")
        return a, b
    return parse


def _focus(v: Any) -> tuple[float, float, float] | None:
    """``"-12:-4@0.7"`` or ``[-12, -4, 0.7]`` → (−12, −4, 0.7); ``""`` / ``[]`` → None."""
    if v is None or v == "" or v == [] or v == ():
        return None
    if isinstance(v, str):
        rng, sep, share = v.partition("@")
        lo, hi = _range(float, -100, 100, "LO:HI@SHARE, e.g. -12:-4@0.7")(rng)
        try:
            p = float(share) if sep else 1.0
        except ValueError:
            raise ValueError("expected LO:HI@SHARE, e.g. -12:-4@0.7") from None
    else:
        lo, hi, p = _numbers(v, float, 3, "[LO, HI, SHARE], e.g. [-12, -4, 0.7]")
        _range(float, -100, 100, "[LO, HI, SHARE], e.g. [-12, -4, 0.7]")((lo, hi))
    if not 0 <= p <= 1:
        raise ValueError("the share after @ must be in [0, 1], e.g. -12:-4@0.7")
    return float(lo), float(hi), float(p)


def _json_object(v: Any) -> dict:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise ValueError("not valid JSON (e.g. '{\"channels\": 64}')") from None
    if not isinstance(v, dict):
        raise ValueError("give a JSON object / TOML table, e.g. '{\"channels\": 64}'")
    return v


PARSERS: dict[str, Callable[[Any], Any]] = {
    "manifest": _names, "out": _text, "preset": _text, "recipe": _text, "model": _text,
    "model_config": _json_object, "init": _text, "teacher": _text, "loss": _text,
    "lr": _number(float, 0, lo_open=True, example=", e.g. 2e-4"),
    "batch_size": _number(int, 1), "epochs": _number(int, 1), "steps": _number(int, 0),
    "max_steps": _number(int, 0), "max_minutes": _number(float, 0), "val_every": _number(int, 1),
    "save_every": _number(int, 0), "limit": _number(int, 0), "val_limit": _number(int, 0), "seed": _number(int, 0),
    "fresh_noise": _flag, "threads": _number(int, 0), "device": _text, "schedule": _choice(SCHEDULES),
    "warmup": _number(int, 0), "clip_grad": _number(float, 0),
    "ema": _number(float, 0, 1, hi_open=True, example=" (a decay such as 0.999; 0 = off)"),
    "no_harm": _number(float, 0, example=" (a weight such as 1; 0 = off)"),
    "no_regress": _number(float, 0, example=" (a weight such as 1; 0 = off)"),
    "noise": _noise, "snr": _range(float, -100, 100, "LO:HI in dB, e.g. -10:15"), "snr_focus": _focus,
    "segment": _number(float, 0.05, 600, lo_open=True, example=" seconds, e.g. 1.0"), "augment": _flag,
    "speed": _range(float, 0.5, 2.0, "LO:HI, e.g. 0.9:1.1"), "eq_db": _number(float, 0, 30, example=" dB (0 = off)"),
    "babble_talkers": _range(int, 1, 64, "LO:HI, e.g. 2:8"), "precision": _choice(PRECISIONS), "compile": _flag,
    "channels_last": _flag,
}


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_value(name: str, value: Any, where: str = "") -> Any:
    """``value`` of field ``name`` typed and checked; a bad one is a :class:`UserError` naming the key and
    ``where`` it came from (a recipe file; a flag when empty)."""
    try:
        return PARSERS[name](value)
    except ValueError as e:
        shown = value if isinstance(value, str) else json.dumps(value)
        key = f"{where}: {name} = {shown}" if where else f"{flag_name(name)} {shown}"
        raise UserError(f"{key[:200]}: {e}") from None


# ------------------------------------------------------------------------------ presets and recipes
def merge(values: dict, layer: dict) -> dict:
    """``layer``'s values over ``values``: another model family drops the earlier model settings; the same
    family merges ``model_config`` key by key."""
    values, layer = dict(values), dict(layer)
    if layer.get("model", values.get("model")) != values.get("model"):
        values.pop("model_config", None)
    elif "model_config" in layer:
        layer["model_config"] = {**values.get("model_config", {}), **layer["model_config"]}
    values.update(layer)
    return values


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the recipe file ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A recipe file's values, typed and checked (its ``extends`` chain merged, this file's values last)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise UserError(f"{path}: 'extends' loops back to this file")
    raw = _read_toml(path)
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - names - RECIPE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; the keys are the `train` options, "
                        "e.g. lr, steps, noise (see digit-denoise train --help)")
    values: dict = {}
    if "extends" in raw:
        if not isinstance(raw["extends"], str):
            raise UserError(f"{path}: extends = {raw['extends']!r}: give the path of another recipe file")
        values = read_recipe(path.parent / raw["extends"], (*_seen, path.resolve()))
    return merge(values, {k: parse_value(k, v, str(path)) for k, v in raw.items() if k in names})


def recipe_description(path: str | Path) -> str:
    """The one-line ``description`` of a recipe file ("" when it has none)."""
    return str(_read_toml(Path(path)).get("description", ""))


def _preset_files() -> list[Path]:
    """The packaged preset recipes, the seed's two first."""
    return sorted(PRESET_DIR.glob("*.toml"), key=lambda p: (not p.stem.startswith("seed"), p.stem))


PRESETS: dict[str, dict] = {p.stem: read_recipe(p) for p in _preset_files()}
PRESET_HELP = {p.stem: recipe_description(p) for p in _preset_files()}


def resolve_config(preset: str = "seed", from_file: dict | None = None, **overrides) -> TrainConfig:
    """Field defaults, then the preset's values, then a recipe file's (``from_file``), then explicit ``overrides`` (None = not
    given). Every value goes through its field's parser. A recipe or override naming another model family
    drops the preset's model settings; the same family merges ``model_config`` key by key."""
    if preset not in PRESETS:
        raise UserError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], "preset": preset}
    for layer in (from_file or {}, {k: v for k, v in overrides.items() if v is not None}):
        unknown = set(layer) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}")
        values = merge(values, {k: parse_value(k, v) for k, v in layer.items()})
    return TrainConfig(**values)


def load_config(path: str | Path, preset: str | None = None, **overrides) -> TrainConfig:
    """The config of a recipe file (its ``preset`` unless ``preset`` is given), then ``overrides``."""
    recipe = read_recipe(path)
    name = preset or recipe.pop("preset", "seed")
    recipe.pop("preset", None)
    return resolve_config(name, recipe, recipe=str(path), **overrides)


def check(cfg: TrainConfig) -> None:
    """What one field cannot say alone: a one-line :class:`UserError` naming the option."""
    if not cfg.out:
        raise UserError("--out: give a run folder, e.g. runs/seed (a flag or `out` in the recipe)")
    if not cfg.manifest:
        raise UserError("--manifest: give a manifest CSV from 'digit-denoise data prepare' (a flag or `manifest` "
                        "in the recipe)")
    if cfg.no_regress and not (cfg.init or cfg.teacher):
        raise UserError(f"--no-regress {cfg.no_regress}: needs --init or --teacher (the model whose output no clip may "
                        "fall below)")
    if cfg.snr_focus is not None and cfg.snr_focus[0] > cfg.snr_focus[1]:
        raise UserError(f"--snr-focus {cfg.snr_focus}: LO must not be above HI")


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a ``total``-step plan: a pure function,
    so a resumed run repeats it exactly. A linear warm-up over ``cfg.warmup`` steps, then the schedule
    (cosine: from ``lr`` down to 5 % at the last planned step)."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "cosine" and total > 1:
        span = max(total - 1 - cfg.warmup, 1)
        t = min(max(step - cfg.warmup, 0) / span, 1.0)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
    return cfg.lr


def as_json(cfg: TrainConfig) -> dict:
    """``cfg`` as it is saved in config.json (tuples as lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def saved_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """The settings of ``cfg`` that differ from a saved config.json (resumable ones aside). A saved value
    goes through its field's parser first (a run saved with ``"snr": "-10:15"`` equals ``[-10, 15]``); a
    field the saved run did not know yet counts as its default."""
    current, defaults = as_json(cfg), as_json(TrainConfig())
    out = []
    for k, v in current.items():
        if k in RESUMABLE_CHANGES:
            continue
        old = saved.get(k, defaults[k])
        try:
            old = json.loads(json.dumps(PARSERS[k](old)))
        except (ValueError, TypeError):
            pass
        if old != v:
            out.append(f"{k}: {old!r} → {v!r}")
    return out


def recipe_differences(path: str | Path, training: dict) -> list[str]:
    """Where a recipe file disagrees with a saved run or shipped model's training settings (``training``:
    its config.json or the ``training`` section of its model JSON). Only the keys ``training`` holds are
    compared, each through its field's parser; where or how fast it ran (``RESUMABLE_CHANGES``) is not."""
    return [d for d in saved_differences(training, load_config(path)) if d.split(":")[0] in training]
