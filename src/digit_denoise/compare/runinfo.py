"""What a model is and how it was trained, read from its run folder or the JSON beside its file.

``compare`` records this in its ``summary.json`` (so a report outlives the run folder it measured),
and the results page reads it back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from safetensors import safe_open

from ..data.manifest import manifest_paths
from ..models import build_model


def _describe(conf: dict) -> dict:
    """Preset / loss / model shape / data of a training config (a run's config.json or a model's
    ``training`` record)."""
    shape = conf.get("model")
    if shape:
        try:  # the family describes itself, its defaults filled in
            shape = build_model(conf["model"], conf.get("model_config") or {}).summary()
        except Exception:  # an unknown family (a newer file) or a config this version refuses
            pass
    data = ", ".join(Path(m).stem for m in manifest_paths(conf.get("manifest") or "")) or None
    out = {"preset": conf.get("preset"), "loss": conf.get("loss"), "shape": shape, "data": data,
           "init": (Path(conf["init"]).name if conf.get("init") else "scratch") if conf else None}
    if conf.get("fresh_noise"):  # seed models: new noise (and a new voice, with augment) every epoch
        out["fresh_noise"] = "noise and voice" if conf.get("augment", True) else "noise"
    return out


def _beside_run(p: Path, name: str) -> Path | None:
    """``name`` in the run folder a checkpoint lies in (``RUN/checkpoints/best`` → ``RUN/name``), if any."""
    return next((c / name for c in (p.parent, p.parent.parent, p.parent.parent.parent) if (c / name).is_file()), None)


def _run_config(p: Path) -> dict:
    """The config.json of the run folder a checkpoint lies in, if any."""
    cfg = _beside_run(p, "config.json")
    try:
        return json.loads(cfg.read_text(encoding="utf-8")) if cfg else {}
    except ValueError:
        return {}


def _elapsed_at(p: Path, step) -> float | None:
    """Training seconds up to ``step``, from the history.jsonl of the run folder a checkpoint lies in."""
    h = _beside_run(p, "history.jsonl")
    try:
        rows = [json.loads(x) for x in h.read_text(encoding="utf-8").splitlines() if x.strip()] if h else []
    except ValueError:
        return None
    return next((r.get("elapsed_s") for r in rows if r.get("step") == step), None)


def run_info(path: str | None) -> dict:
    """Parameters / steps / training time / config of one of our models (its run folder, or the JSON
    beside a model file such as the shipped default)."""
    if not path:
        return {}
    p = Path(path)
    for cand in (p, p.parent, p.parent.parent, p.parent.parent.parent):
        s = cand / "summary.json"
        if s.is_file():
            try:
                d = json.loads(s.read_text(encoding="utf-8"))
                cfg = cand / "config.json"
                conf = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {}
            except ValueError:
                return {}
            return {"parameters": d.get("parameters"), "steps": d.get("steps"), "train_s": d.get("elapsed_s"),
                    **_describe(conf)}
    if p.is_dir():  # a run folder without summary.json (still training): its best checkpoint
        p = next((c for c in (p, p / "checkpoints" / "best", p / "checkpoints" / "last") if (c / "model.json").is_file()),
                 p)
    meta = p.with_suffix(".json") if p.suffix == ".safetensors" else p / "model.json"
    if meta.is_file():
        try:
            m = json.loads(meta.read_text(encoding="utf-8"))
        except ValueError:
            return {}
        conf = m.get("training") or _run_config(p)
        info = {"steps": m.get("step"), **_describe(conf)}
        if m.get("training", {}).get("elapsed_s") is not None:  # a shipped model records its training time
            info["train_s"] = m["training"]["elapsed_s"]
        else:
            info["train_s"] = _elapsed_at(p, m.get("step"))
        info["data"] = info["data"] or m.get("trained_on")
        try:
            with safe_open(str(p if p.suffix == ".safetensors" else p / "model.safetensors"), "pt") as f:
                info["parameters"] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        except Exception:  # a damaged or missing file: the table shows "—"
            pass
        return info
    return {}
