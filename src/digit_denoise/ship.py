"""Package a trained run as the shipped default model: ``python -m digit_denoise.ship RUN``.

Writes ``src/digit_denoise/pretrained/default.safetensors`` (weights stored as float16, loaded back
into float32: half the size, no audible change) and ``default.json`` (the run's model.json plus
provenance: the training command, data and licence). Loading it never executes code.
``--import-gtcrn`` / ``--import-ul-unas`` package instead the authors' published DNS3 weights of those
models, with their MIT licence (``gtcrn-dns3.*``, ``ul-unas-dns3.*``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .audio import atomic_path
from .checkpoint import FORMAT, load_model, resolve

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
# run settings that say where or how fast it ran, not what was learned: left out of a shipped model's JSON
UNSHIPPED_KEYS = {"out", "threads", "device", "compile", "channels_last", "precision", "max_steps", "val_every",
                  "save_every"}


def ship(run: str | Path, out_dir: str | Path = PRETRAINED, name: str = "default", note: dict | None = None,
         dtype: str = "float16") -> Path:
    """Package ``run``'s best weights as ``out_dir/{name}.safetensors`` (+ ``.json``); float16 halves the file,
    float32 keeps the exact weights that were measured (for small models the size does not matter)."""
    model, meta = load_model(run)
    weights, _ = resolve(run)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    half = dtype == "float16"
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    cfg_path = Path(run) / "config.json"
    train_cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    history = [json.loads(x) for x in (Path(run) / "history.jsonl").read_text(encoding="utf-8").splitlines()
               if x.strip()] if (Path(run) / "history.jsonl").is_file() else []
    at_step = [r for r in history if r.get("step") == meta.get("step")]
    training = {k: v for k, v in train_cfg.items() if k not in UNSHIPPED_KEYS}
    if at_step:  # wall time and speed of the run up to the shipped checkpoint
        training["elapsed_s"] = at_step[-1].get("elapsed_s")
        training["samples_per_s"] = round(sum(r.get("samples_per_s", 0) for r in history
                                              if r["step"] <= meta["step"]) / max(1, len(
                                              [r for r in history if r["step"] <= meta["step"]])), 1)
    meta = {**meta, "weights_dtype": dtype, "source_checkpoint": str(weights.parent.name),
            "training": training, **(note or {})}
    with atomic_path(out_dir / f"{name}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    with atomic_path(out_dir / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for suffix in (".safetensors", ".json"):  # package data: readable by everyone
        (out_dir / f"{name}{suffix}").chmod(0o644)
    return out_dir / f"{name}.safetensors"


def _import_published(name: str, stem: str, weights: str | Path, out_dir: str | Path, provenance: dict) -> Path:
    """Load published weights into model ``name`` with ``strict=True`` (exact names and shapes), then write
    ``{stem}.safetensors``, ``{stem}.json`` and the licence ``LICENSE-{name}`` found beside ``weights``."""
    from safetensors.torch import load_file

    from .checkpoint import model_meta
    from .models import build_model

    weights, out_dir = Path(weights), Path(out_dir)
    model = build_model(name)
    model.load_state_dict(load_file(str(weights)), strict=True)
    licence = weights.parent / f"LICENSE-{name}"
    meta = model_meta(name, model.config.to_dict(), {"kind": "wave"}, model.config.sample_rate, provenance)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / f"{stem}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    with atomic_path(out_dir / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with atomic_path(out_dir / f"LICENSE-{name}") as tmp:
        tmp.write_bytes(licence.read_bytes())
    for file in (f"{stem}.safetensors", f"{stem}.json", f"LICENSE-{name}"):  # package data: readable by all
        (out_dir / file).chmod(0o644)
    return out_dir / f"{stem}.safetensors"


# The authors' published weights this package ships: model family → (file stem, provenance).
PUBLISHED = {
    "gtcrn": ("gtcrn-dns3", {"trained_on": "DNS Challenge 3 (by the GTCRN authors)",
                             "licence": "MIT, Copyright (c) Rong Xiaobin: see LICENSE-gtcrn beside this file",
                             "source": "checkpoints/model_trained_on_dns3.tar of the public repository "
                                       "Xiaobin-Rong/gtcrn"}),
    "ul-unas": ("ul-unas-dns3", {"trained_on": "DNS Challenge 3 (by the UL-UNAS authors)",
                                 "licence": "MIT, Copyright (c) 2026 Xiaobin Rong: see LICENSE-ul-unas beside this file",
                                 "source": "checkpoints/model_trained_on_dns3.tar of the public repository "
                                           "Xiaobin-Rong/ul-unas"}),
}


def import_published(name: str, weights: str | Path, out_dir: str | Path = PRETRAINED) -> Path:
    """Package the published DNS3 weights of ``name`` (``../shared/pretrained/{stem}.safetensors``) with their
    MIT licence, after loading them with ``strict=True`` (exact names and shapes)."""
    stem, provenance = PUBLISHED[name]
    return _import_published(name, stem, weights, out_dir, provenance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m digit_denoise.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (its checkpoints/best) or checkpoint folder; with --import-gtcrn the "
                                "published gtcrn-dns3.safetensors, with --import-ul-unas ul-unas-dns3.safetensors")
    ap.add_argument("--import-gtcrn", action="store_true", help="package the published GTCRN weights instead")
    ap.add_argument("--import-ul-unas", action="store_true", help="package the published UL-UNAS weights instead")
    ap.add_argument("--out", default=str(PRETRAINED), help="folder to write default.safetensors/.json into")
    ap.add_argument("--name", default="default", help="file name (default: default; `fast` for the small model)")
    ap.add_argument("--data", default="", help="what it was trained on (recorded in the JSON)")
    ap.add_argument("--licence", default="", help="licence/attribution of the training data (recorded in the JSON)")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                    help="stored weights: float16 (half the size; default) or float32 (exactly the measured weights)")
    a = ap.parse_args(argv)
    for name, wanted in (("gtcrn", a.import_gtcrn), ("ul-unas", a.import_ul_unas)):
        if wanted:
            path = import_published(name, a.run, a.out)
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB), its .json and LICENSE-{name}")
            return 0
    note = {k: v for k, v in (("trained_on", a.data), ("data_licence", a.licence)) if v}
    path = ship(a.run, a.out, name=a.name, note=note, dtype=a.dtype)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}")
    with torch.no_grad():
        load_model(path)  # it loads back
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
