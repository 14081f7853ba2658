"""Checkpoints without pickle: safetensors weights + a JSON config, and a weights-only state file.

A checkpoint is a folder::

    model.safetensors   weights (and BatchNorm buffers)
    model.json          {"format", "format_version", "model", "config", "features", "sample_rate", ...}
    state.pt            optimizer / RNG / step state (training only; loaded with weights_only=True)

A single ``.safetensors`` file with its ``.json`` beside it (same stem) is also accepted by
:func:`load_model`. Folders are written to a temp name and swapped into place, so a crash never
leaves a half-written checkpoint. Loading never executes code.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .audio import MAX_RATE, MIN_RATE
from .errors import UserError
from .models import available_models, build_model
from .pretrained import available, packaged_path
from .version import __version__

FORMAT = "digit-denoise-model"
FORMAT_VERSION = 1


def model_meta(name: str, config: dict, features: dict, sample_rate: int, extra: dict | None = None) -> dict:
    """The JSON that rebuilds a model: its name, config dataclass as a dict, feature settings, rate."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": name, "config": config,
            "features": features, "sample_rate": sample_rate,
            "versions": {"digit_denoise": __version__, "torch": torch.__version__}, **(extra or {})}


def _write_model_files(folder: Path, model: torch.nn.Module, meta: dict) -> None:
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": FORMAT})
    (folder / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_checkpoint(folder: str | Path, model: torch.nn.Module, meta: dict, state: dict | None = None) -> Path:
    """Write ``folder`` atomically (temp folder + rename); ``state`` goes to state.pt if given."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    tmp.chmod(0o755)
    try:
        _write_model_files(tmp, model, meta)
        if state is not None:
            torch.save(state, tmp / "state.pt")
        old = folder.parent / f".{folder.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def recover(folder: str | Path) -> Path:
    """If a crash happened between the two renames of :func:`save_checkpoint`, restore the old copy."""
    folder = Path(folder)
    old = folder.parent / f".{folder.name}.old"
    if not folder.exists() and old.exists():
        os.replace(old, folder)
    return folder


def resolve(path: str | Path) -> tuple[Path, Path]:
    """Find (weights file, json file) for a run folder, a checkpoint folder, a .safetensors/.json file or
    the name of a model shipped with the package (:mod:`.pretrained`, when no such file exists)."""
    p = Path(path)
    if not p.exists() and packaged_path(str(path)) is not None:
        p = packaged_path(str(path))
    if not p.exists():
        raise UserError(f"{p}: model not found; pass a run folder (runs/NAME), a checkpoint folder, a "
                        f".safetensors file or a shipped model ({', '.join(available())})")
    if p.is_dir():
        for cand in (p, p / "checkpoints" / "best", p / "checkpoints" / "last"):
            recover(cand)
            if (cand / "model.safetensors").is_file():
                return cand / "model.safetensors", cand / "model.json"
        raise UserError(f"{p}: no model.safetensors in this folder or its checkpoints/best|last; "
                        "is it a finished training run?")
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix == ".safetensors":
        js = p.with_suffix(".json")
        return p, js if js.exists() else p.parent / "model.json"
    raise UserError(f"{p}: not a model file; expected a .safetensors file (with its .json) or a run folder")


MAX_JSON_BYTES = 1 << 20  # a model's JSON is a few kB; a larger one is refused unread
MAX_JSON_DEPTH = 32  # nesting of a model's JSON (a real one: 4)


def json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (outside strings), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_meta(json_path: Path) -> dict:
    try:
        size = json_path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise UserError(f"{json_path}: model config is {size / 2**20:.1f} MB; a model's JSON is a few kB")
        text = json_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{json_path}: model config missing; a model needs its .json beside the weights") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{json_path}: model config is not valid JSON ({str(e)[:80]})") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise UserError(f"{json_path}: model config is nested more than {MAX_JSON_DEPTH} deep; the file is damaged")
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise UserError(f"{json_path}: model config is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{json_path}: not a digit-denoise model config (no \"format\": \"{FORMAT}\")")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UserError(f"{json_path}: model config has an invalid format_version {version!r}; "
                        "re-save the model with 'digit-denoise train'")
    if version > FORMAT_VERSION:
        raise UserError(f"{json_path}: model format version {version} is newer than this digit-denoise "
                        f"understands ({FORMAT_VERSION}); upgrade digit-denoise")
    return meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from its checkpoint alone. Returns (model in eval mode, meta dict).

    Used by resume, evaluate, the CLI and the Python API. Never executes code from the file.
    """
    weights, js = resolve(path)
    meta = read_meta(js)
    name = meta.get("model")
    if name not in available_models():
        raise UserError(f"{js}: unknown model '{name}' (known: {', '.join(available_models())}); "
                        "it may come from a newer digit-denoise")
    config, features, rate = meta.get("config") or {}, meta.get("features") or {}, meta.get("sample_rate")
    if not isinstance(config, dict) or not isinstance(features, dict):
        raise UserError(f"{js}: \"config\" and \"features\" must be JSON objects; the model file is damaged")
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
        raise UserError(f"{js}: invalid sample_rate {str(rate)[:20]} (expected {MIN_RATE}–{MAX_RATE} Hz); "
                        "the model file is damaged")
    lim = meta.get("atten_lim_db")
    if lim is not None:
        try:
            ok = not isinstance(lim, bool) and isinstance(lim, (int, float)) and 0 <= float(lim) < math.inf
        except OverflowError:  # an int beyond any float
            ok = False
        if not ok:
            raise UserError(f"{js}: invalid atten_lim_db {str(lim)[:20]} (expected a number of dB ≥ 0 or null); "
                            "the model file is damaged")
        meta["atten_lim_db"] = float(lim)
    shapes = weight_shapes(weights)
    check_shapes(js, weights, name, config, shapes)  # on the meta device: nothing is allocated
    try:
        model = build_model(name, config)
    except UserError as e:
        raise UserError(f"{js}: {e}") from None
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, RuntimeError, MemoryError) as e:
        raise UserError(f"{js}: model config does not fit model '{name}' ({brief(e)})") from None
    _check_consistent(js, model, features, rate)
    try:
        tensors = dequantize(load_file(str(weights)))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{weights}: corrupt or not a safetensors file ({brief(e, 80)})") from None
    model.load_state_dict(tensors, strict=True)  # names and shapes checked above
    return model.to(device).eval(), meta


def quantize(state: dict[str, torch.Tensor], min_size: int = 1024) -> dict[str, torch.Tensor]:
    """Weights of 2 or more dimensions (at least ``min_size`` values) → ``NAME.q`` (int8) + ``NAME.scale``
    (float32, one per output row: its largest magnitude / 127); the rest unchanged. A quarter of float32's
    size; the shipped models that need it are measured again after (docs/results.md)."""
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.dim() >= 2 and v.numel() >= min_size:
            scale = v.float().abs().flatten(1).amax(1).clamp_min(1e-12) / 127
            out[f"{k}.q"] = torch.round(v.float() / scale.view(-1, *[1] * (v.dim() - 1))).to(torch.int8).contiguous()
            out[f"{k}.scale"] = scale.contiguous()
        else:
            out[k] = v.contiguous()
    return out


def quantized_names(keys) -> set[str]:
    """The tensors stored by :func:`quantize` as ``NAME.q`` beside ``NAME.scale``: their ``NAME``s."""
    keys = set(keys)
    return {k[:-2] for k in keys if k.endswith(".q") and k[:-2] + ".scale" in keys}


def dequantize(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`quantize` (float32 weights); tensors that were not quantized pass unchanged."""
    packed = quantized_names(tensors)
    out = {k: v for k, v in tensors.items() if k not in {f"{n}.q" for n in packed} | {f"{n}.scale" for n in packed}}
    for n in packed:
        q, scale = tensors[f"{n}.q"], tensors[f"{n}.scale"].float()
        out[n] = q.float() * scale.view(-1, *[1] * (q.dim() - 1))
    return out


def brief(e: BaseException, n: int = 160) -> str:
    """The first line of an error, cut at a word boundary (never mid-number) when longer than ``n``."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0].strip()
    if len(text) <= n:
        return text
    return text[:n].rsplit(" ", 1)[0] + " …"


def weight_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a safetensors file, read from its header alone (no tensor is loaded)."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except FileNotFoundError:
        raise UserError(f"{weights}: weights file missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{weights}: corrupt or not a safetensors file ({brief(e, 80)})") from None
    # int8 weights (:func:`quantize`) are NAME.q beside NAME.scale: the tensor NAME, of NAME.q's shape
    packed = quantized_names(shapes)
    out = {k: v for k, v in shapes.items() if k[:-2] not in packed and k[:-6] not in packed}
    return out | {n: shapes[f"{n}.q"] for n in packed}


def check_shapes(js: Path, weights: Path, name: str, config: dict, shapes: dict[str, tuple[int, ...]]) -> None:
    """Build the model on the meta device (no memory) and compare its tensors with the file's, name by name:
    a config that does not fit its weights is refused before anything is allocated."""
    try:
        with torch.device("meta"):
            skeleton = build_model(name, config)
    except UserError as e:
        raise UserError(f"{js}: {e}") from None
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError, RuntimeError, MemoryError) as e:
        raise UserError(f"{js}: model config does not fit model '{name}' ({brief(e)})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        said = "; ".join(x for x in (f"missing {', '.join(missing[:3])}" if missing else "",
                                     f"unexpected {', '.join(unexpected[:3])}" if unexpected else "") if x)
        raise UserError(f"{weights}: weights do not match the model in {js.name} ({said[:160]})")
    wrong = [k for k in expected if expected[k] != shapes[k]]
    if wrong:
        k = wrong[0]
        raise UserError(f"{weights}: weights do not match the model in {js.name} ({k}: the file has "
                        f"{list(shapes[k])}, the config makes {list(expected[k])})")


def _check_consistent(js: Path, model: torch.nn.Module, features: dict, rate: int) -> None:
    """The model family, its feature kind and every sample rate named in the file must agree."""
    kind = model.kind
    if features.get("kind", kind) != kind:
        raise UserError(f"{js}: model '{type(model).__name__}' takes '{kind}' input but the file says features "
                        f"'{features.get('kind')}'; the model file is damaged or from another version")
    rates = {"sample_rate": rate, "features.sample_rate": features.get("sample_rate"),
             "config.sample_rate": model.sample_rate if kind == "wave" else None}
    rates = {k: v for k, v in rates.items() if v is not None}
    if len(set(rates.values())) > 1:
        said = ", ".join(f"{k} {v}" for k, v in rates.items())
        raise UserError(f"{js}: the model file names different sample rates ({said}); it was not saved by "
                        "digit-denoise or was edited; re-export it")


# ------------------------------------------------------------------------ training state
def rng_state() -> dict:
    """Torch, numpy and random states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                                                      int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "random": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    r = state["random"]
    random.setstate((r[0], tuple(r[1]), r[2]))


def load_state(folder: str | Path) -> dict:
    """Load state.pt with ``weights_only=True`` (no code execution)."""
    path = Path(folder) / "state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: training state missing; pass --restart to start over") from None
    except Exception as e:
        raise UserError(f"{path}: unreadable training state ({str(e)[:80]}); pass --restart to start over") from None
