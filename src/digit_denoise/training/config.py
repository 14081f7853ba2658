"""What defines a training run: :class:`TrainConfig`, the presets, and the ``train`` command's flags.

The flags are generated from the dataclass fields and the comment beside each one
(:func:`add_arguments`), so an option is declared once. No torch here: ``digit-denoise --help``
builds these flags without loading the training stack.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import re
from dataclasses import MISSING, dataclass, field, fields

from ..errors import UserError


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json in the run folder)."""

    manifest: str = ""  # manifest CSV from `data prepare`; waveform models take a comma list a.csv,b.csv (their union)
    out: str = ""  # run folder, e.g. runs/seed
    preset: str = "seed"  # a name from PRESETS; explicit options override it
    model: str = "seed"  # model family (see python -m digit_denoise.models)
    model_config: dict = field(default_factory=dict)  # JSON overrides of the model's config, e.g. '{"channels": 64}'
    init: str = ""  # start from these weights (run folder, model file or packaged name such as gtcrn): fine-tuning
    loss: str = "mse"  # training loss: mse (seed); sisdr, mrstft, sisdr+mrstft, spec+sisdr (waveform)
    lr: float = 2e-4  # Adam learning rate
    batch_size: int = 128  # global batch size
    epochs: int = 6  # passes over the training split
    steps: int = 0  # planned optimiser steps of the whole run, across resumes (0 = epochs × steps per epoch)
    max_steps: int = 0  # stop after this many steps (0 = no limit); the schedule still spans the planned run
    val_every: int = 75  # validate (and save last/best) every N steps
    save_every: int = 0  # also save `last` every N steps (0 = at validation and every 5 minutes)
    limit: int = 0  # use only N training clips (0 = all)
    val_limit: int = 0  # use only N validation clips (0 = all)
    seed: int = 0  # one seed for torch, numpy and random (and the data order)
    fresh_noise: bool = False  # seed models: new noise (and, with augment, a new voice/mic) every epoch; evaluation noise stays fixed
    threads: int = 0  # torch CPU threads (0 = torch's default)
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    schedule: str = "constant"  # learning-rate schedule: constant or cosine (to 5 % at the last planned step)
    clip_grad: float = 0.0  # clip the gradient norm to this value (0 = off)
    ema: float = 0.0  # decay of a moving average of the weights, validated and saved as best (0 = off)
    no_harm: float = 0.0  # waveform models: weight of a penalty on the dB of SI-SDR a clip loses against its noisy input (0 = off)
    no_regress: float = 0.0  # fine-tuning (--init): weight of a penalty on the dB of SI-SDR a clip loses against the --init model's output (0 = off)
    noise: str = "white,pink,brown,colored,babble"  # waveform models: kinds (white, pink, brown, colored, texture, babble) and/or folders (DIR, DIR:seen); repeat one to draw it more often
    snr: str = "-10:15"  # waveform models: SNR range of the training mixtures (dB)
    snr_focus: str = ""  # waveform models: LO:HI@SHARE draws that share of the SNRs from LO…HI dB
    segment: float = 1.0  # waveform models: seconds per training window
    augment: bool = True  # waveform models (seed models with fresh-noise): spectral tilt, speed/pitch, EQ (and band limits) on the clean speech
    speed: str = "0.85:1.15"  # waveform models: speed/pitch factor range of the augmentation
    eq_db: float = 0.0  # waveform models: random peaking EQ of the clean speech, ±dB (0 = off)
    babble_talkers: str = "3:7"  # waveform models: talkers per babble mixture, LO:HI
    precision: str = "auto"  # auto (bf16 autocast on a CUDA GPU that has it, else fp32), fp32 or bf16
    compile: bool = False  # torch.compile the model (slow first steps; measured in make bench)
    channels_last: bool = False  # channels-last memory format (2-D seed models)


PRESETS: dict[str, dict] = {
    # The published recipe, done right: U-Net 1→32→64→128, MSE, Adam 2e-4, batch 128, 6 epochs.
    "seed": dict(model="seed", loss="mse", lr=2e-4, batch_size=128, epochs=6, val_every=75),
    # The published bug reproduced (only the 33-parameter head trains) — for side-by-side comparison only.
    "seed-buggy": dict(model="seed-buggy", loss="mse", lr=2e-4, batch_size=128, epochs=6, val_every=75),
    # A 16 kHz spectral-mask network (waveform in/out), SI-SDR loss, noise of
    # many kinds at -10…15 dB drawn on the fly, augmented speech. Fast on one CPU thread.
    "fast": dict(model="masknet", model_config={"channels": 128, "dilations": [1, 2, 4, 8, 16, 1, 2, 4, 8, 16]},
                 loss="sisdr", lr=1e-3, batch_size=32, epochs=60, val_every=200, schedule="cosine", clip_grad=5.0),
    # No limit but the machine: a wider, deeper complex-mask MaskNet (phase too), SI-SDR + multi-resolution
    # STFT loss, 4× the steps. ~17× the training compute of `fast`: meant for a GPU.
    "best": dict(model="masknet", model_config={"channels": 256, "dilations": [1, 2, 4, 8, 16, 32] * 3,
                                                "mask": "complex"},
                 loss="sisdr+mrstft", lr=1e-3, batch_size=32, epochs=240, val_every=500, schedule="cosine",
                 clip_grad=5.0),
    # The wideband-speech recipe for this CPU: a 256-channel, 12-block MaskNet with per-frame channel norm and
    # a bounded complex mask, compressed-spectrum + SI-SDR loss, EMA of the weights; real noise (a folder's
    # :seen part) beside coloured noise and 2–8-talker babble, mostly −12…−4 dB, EQ/speed/level augmentation.
    # Meant to run for hours on one thread and be resumed.
    "speech": dict(model="masknet", model_config={"channels": 256, "dilations": [1, 2, 4, 8, 16, 32] * 2,
                                                  "mask": "complex", "norm": "frame"},
                   loss="spec+sisdr", lr=1e-3, batch_size=32, steps=30000, epochs=1, val_every=500,
                   schedule="cosine", clip_grad=5.0, ema=0.999, snr="-12:10", snr_focus="-12:-4@0.7",
                   babble_talkers="2:8", speed="0.9:1.1", eq_db=15.0),
}

# Options that may change when a run is resumed (they do not change what a step computes).
RESUMABLE_CHANGES = {"epochs", "max_steps", "val_every", "save_every", "threads", "device", "out", "manifest",
                     "compile", "channels_last", "precision"}
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("constant", "cosine")


def resolve_config(preset: str, **overrides) -> TrainConfig:
    """Preset values, then explicit overrides (None means 'not given')."""
    if preset not in PRESETS:
        raise UserError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    values = {"preset": preset, **PRESETS[preset]}
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.get("model", values.get("model")) != values.get("model"):
        values.pop("model_config", None)  # another model family: the preset's model settings do not apply
    if "model_config" in given and given.get("model", values.get("model")) == values.get("model"):
        # same model family: the given keys override the preset's, the others stay the preset's
        given["model_config"] = {**values.get("model_config", {}), **given["model_config"]}
    values.update(given)
    unknown = set(values) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}")
    return TrainConfig(**values)


def check(cfg: TrainConfig) -> None:
    """Refuse impossible values with a one-line :class:`UserError` naming the flag."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    for name in ("batch_size", "epochs", "val_every"):
        if int(getattr(cfg, name)) < 1:
            raise UserError(f"{flag(name)} {getattr(cfg, name)}: must be at least 1")
    for name in ("steps", "max_steps", "limit", "val_limit", "seed", "threads"):
        if int(getattr(cfg, name)) < 0:
            raise UserError(f"{flag(name)} {getattr(cfg, name)}: must not be negative")
    if not cfg.out:
        raise UserError("--out: give a run folder, e.g. runs/seed")
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"--schedule {cfg.schedule!r}: choose {' or '.join(SCHEDULES)}")
    if cfg.precision not in PRECISIONS:
        raise UserError(f"--precision {cfg.precision!r}: choose one of {', '.join(PRECISIONS)}")
    if not 0 <= cfg.ema < 1:
        raise UserError(f"--ema {cfg.ema}: give a decay in [0, 1), e.g. 0.999 (0 = off)")
    for name in ("no_harm", "no_regress"):
        if not (getattr(cfg, name) >= 0 and math.isfinite(getattr(cfg, name))):
            raise UserError(f"{flag(name)} {getattr(cfg, name)}: give a weight ≥ 0, e.g. 1 (0 = off)")
    if cfg.no_regress and not cfg.init:
        raise UserError(f"--no-regress {cfg.no_regress}: needs --init (the model whose output no clip may fall below)")
    if not (cfg.segment > 0.05 and math.isfinite(cfg.segment)):
        raise UserError(f"--segment {cfg.segment}: give seconds > 0.05, e.g. 1.0")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise UserError(f"--lr {cfg.lr}: must be a positive number, e.g. 2e-4")


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a ``total``-step plan: a pure function,
    so a resumed run repeats it exactly."""
    if cfg.schedule == "cosine" and total > 1:
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / (total - 1))))
    return cfg.lr


def saved_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """The settings of ``cfg`` that differ from a saved config.json (resumable ones aside). A field the
    saved run did not know yet counts as its default."""
    current = json.loads(json.dumps(_as_dict(cfg)))  # as it would be saved (tuples → lists)
    defaults = json.loads(json.dumps(_as_dict(TrainConfig())))
    return [f"{k}: {saved.get(k, defaults[k])!r} → {v!r}" for k, v in current.items()
            if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v]


def _as_dict(cfg: TrainConfig) -> dict:
    from dataclasses import asdict

    return asdict(cfg)


# ------------------------------------------------------------------------------ CLI flags
PRESET_HELP = {
    "seed": "the published recipe done right",
    "seed-buggy": "its bug reproduced (comparison only)",
    "fast": "16 kHz mask network, noise drawn on the fly, ~13 min on 2 cores (the shipped `fast` model)",
    "best": "a wider, deeper complex-mask network, 4× the steps (for a GPU)",
    "speech": "the wideband-speech recipe for long CPU runs: real noise, EMA, compressed-spectrum loss",
}
FLAG_HELP_EXTRA = {
    "preset": lambda: ": " + "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()),
}
_COMMENT = re.compile(r"^\s+(\w+):\s*[^=]+=.*?#\s*(.*)$")


def field_help() -> dict[str, str]:
    """{field: the comment beside it in :class:`TrainConfig`}."""
    out = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = _COMMENT.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field (``--batch-size``; booleans as ``--compile`` / ``--no-augment``).

    Every default is None (not given), so the preset's value or the field's default applies.
    """
    helps = field_help()
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        text = (helps.get(f.name, "") + FLAG_HELP_EXTRA.get(f.name, lambda: "")()).replace("%", "%%")  # argparse formats help
        if f.name in ("manifest", "out"):
            p.add_argument(flag, required=True, help=text)
        elif f.name == "preset":
            p.add_argument(flag, default="seed", choices=list(PRESETS), help=text)
        elif f.type in ("bool", bool):
            if default:
                p.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_const", const=False,
                               default=None, help=f"turn off: {text}")
            else:
                p.add_argument(flag, action="store_const", const=True, default=None, help=text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)  # dicts: JSON text, parsed below
            p.add_argument(flag, type=kind, default=None, help=f"{text} (default: the preset's, else {default!r})")


def _json_object(flag: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: not valid JSON (e.g. '{{\"channels\": 64}}')") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag} {text!r}: give a JSON object, e.g. '{{\"channels\": 64}}'")
    return value


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    """The resolved config of parsed ``train`` flags (a bad JSON value is a one-line :class:`UserError`)."""
    overrides = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if f.name != "preset"}
    for f in fields(TrainConfig):
        if str(f.type) == "dict" and isinstance(overrides.get(f.name), str):
            overrides[f.name] = _json_object("--" + f.name.replace("_", "-"), overrides[f.name])
    return resolve_config(a.preset, **overrides)
