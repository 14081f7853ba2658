"""Package a trained run as a shipped model: ``python -m tools.ship RUN --name default`` (from a checkout).

Writes the registry entry's files into ``src/digit_denoise/pretrained/`` (weights stored as float16, loaded
back into float32: half the size, no audible change; or float32) and its JSON (the run's model.json plus
provenance: the recipe file that made it, checked against the run, the data and its licence; relative
paths only). Loading it never executes code.
``--import-gtcrn`` / ``--import-ul-unas`` package instead the authors' published DNS3 weights of those
models, with their MIT licence (``gtcrn-dns3.*``, ``ul-unas-dns3.*``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from digit_denoise.audio import atomic_path
from digit_denoise.checkpoint import FORMAT, load_model, model_meta, quantize, resolve
from digit_denoise.data.manifest import manifest_paths
from digit_denoise.errors import UserError
from digit_denoise.models import build_model
from digit_denoise.pretrained import FOLDER, REGISTRY
from digit_denoise.training.config import recipe_differences

# run settings that say where or how fast it ran, not what was learned: left out of a shipped model's JSON
UNSHIPPED_KEYS = {"out", "threads", "device", "compile", "channels_last", "precision", "max_steps", "max_minutes",
                  "val_every", "save_every"}


def relative(path: str) -> str:
    """A path as the repository names it: relative to the current folder (the checkout) when inside it, else
    its file name alone: a shipped model never records the folders of the machine that trained it."""
    p = Path(path)
    if not p.is_absolute():
        return path
    try:
        return p.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return p.name


def shipped_training(run: str | Path, meta: dict, recipe: str | None) -> dict:
    """The ``training`` section of a shipped model: the run's config.json without where/how fast it ran,
    relative paths, the recipe that made it (checked against the run: a difference is a UserError), and the
    run's wall time and speed up to the shipped checkpoint."""
    cfg_path = Path(run) / "config.json"
    train_cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    recipe = recipe or train_cfg.get("recipe") or ""
    if not recipe:
        raise UserError(f"{run}: the run was not made from a recipe file; pass --recipe FILE (the recipe that "
                        "made it), so that the shipped model can be reproduced")
    diffs = recipe_differences(recipe, train_cfg)
    if diffs:
        raise UserError(f"{recipe}: does not match the run {run} ({'; '.join(diffs)[:300]})")
    training = {k: v for k, v in train_cfg.items() if k not in UNSHIPPED_KEYS}
    training["recipe"] = relative(str(Path(recipe).resolve())) if Path(recipe).is_absolute() else recipe
    training["manifest"] = [relative(m) for m in manifest_paths(training.get("manifest") or "")]
    if training.get("init") and Path(training["init"]).exists():
        training["init"] = relative(str(Path(training["init"]).resolve()))
    history = [json.loads(x) for x in (Path(run) / "history.jsonl").read_text(encoding="utf-8").splitlines()
               if x.strip()] if (Path(run) / "history.jsonl").is_file() else []
    upto = [r for r in history if r.get("step", 0) <= meta.get("step", 0)]
    if upto:  # wall time and speed of the run up to the shipped checkpoint
        training["elapsed_s"] = upto[-1].get("elapsed_s")
        training["samples_per_s"] = round(sum(r.get("samples_per_s", 0) for r in upto) / len(upto), 1)
    return training


def ship(run: str | Path, name: str = "default", out_dir: str | Path = FOLDER, note: dict | None = None,
         dtype: str = "float16", recipe: str | None = None, atten_lim_db: float | None = None) -> Path:
    """Package ``run``'s best weights as the shipped model ``name`` (its files in ``out_dir``: the package's
    ``pretrained/`` folder by default, where ``name`` must be in the registry); float16 halves the file, int8
    (per-row scales) quarters it, float32 keeps the exact weights that were measured. ``atten_lim_db``: the
    model's own attenuation limit (see :class:`digit_denoise.enhance.Denoiser`; choose it on the validation
    split). A shipped model is measured again as shipped."""
    out_dir = Path(out_dir)
    if out_dir.resolve() == FOLDER and name not in REGISTRY:
        raise UserError(f"--name {name!r}: not in the registry (digit_denoise/pretrained/__init__.py: "
                        f"{', '.join(REGISTRY)}); add it there first")
    stem = REGISTRY[name].stem if name in REGISTRY and out_dir.resolve() == FOLDER else name
    if atten_lim_db is not None and not 0 <= atten_lim_db < float("inf"):
        raise UserError(f"--atten-lim {atten_lim_db}: give a number of dB ≥ 0")
    model, meta = load_model(run)
    weights, _ = resolve(run)
    training = shipped_training(run, meta, recipe)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if dtype == "int8":  # a quarter of float32: larger models fit the repository's 2 MiB file limit
        tensors = quantize(state)
    else:
        half = dtype == "float16"
        tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    meta = {**meta, "weights_dtype": dtype, "source_checkpoint": str(weights.parent.name),
            "training": training, **(note or {})}
    if atten_lim_db is not None:
        meta["atten_lim_db"] = float(atten_lim_db)
    with atomic_path(out_dir / f"{stem}.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    with atomic_path(out_dir / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for suffix in (".safetensors", ".json"):  # package data: readable by everyone
        (out_dir / f"{stem}{suffix}").chmod(0o644)
    return out_dir / f"{stem}.safetensors"


def _import_published(name: str, stem: str, weights: str | Path, out_dir: str | Path, provenance: dict) -> Path:
    """Load published weights into model ``name`` with ``strict=True`` (exact names and shapes), then write
    ``{stem}.safetensors``, ``{stem}.json`` and the licence ``LICENSE-{name}`` found beside ``weights``."""
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


def import_published(name: str, weights: str | Path, out_dir: str | Path = FOLDER) -> Path:
    """Package the published DNS3 weights of ``name`` (``../shared/pretrained/{stem}.safetensors``) with their
    MIT licence, after loading them with ``strict=True`` (exact names and shapes)."""
    stem, provenance = PUBLISHED[name]
    return _import_published(name, stem, weights, out_dir, provenance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (its checkpoints/best) or checkpoint folder; with --import-gtcrn the "
                                "published gtcrn-dns3.safetensors, with --import-ul-unas ul-unas-dns3.safetensors")
    ap.add_argument("--import-gtcrn", action="store_true", help="package the published GTCRN weights instead")
    ap.add_argument("--import-ul-unas", action="store_true", help="package the published UL-UNAS weights instead")
    ap.add_argument("--out", default=str(FOLDER), help="folder to write the model files into (default: the "
                    "package's pretrained/ folder)")
    ap.add_argument("--name", default="default", help=f"the shipped name ({', '.join(REGISTRY)})")
    ap.add_argument("--recipe", default=None, help="the recipe file that made the run (default: the one its "
                    "config.json names); checked against the run")
    ap.add_argument("--data", default="", help="what it was trained on (recorded in the JSON)")
    ap.add_argument("--licence", default="", help="licence/attribution of the training data (recorded in the JSON)")
    ap.add_argument("--dtype", choices=("float16", "float32", "int8"), default="float16",
                    help="stored weights: float16 (half the size; default), int8 (a quarter, per-row scales) or "
                         "float32 (exactly the measured weights)")
    ap.add_argument("--atten-lim", type=float, default=None, metavar="DB",
                    help="the model's own attenuation limit in dB (the input mixed back in; chosen on the "
                         "validation split), recorded in its JSON; default: none")
    a = ap.parse_args(argv)
    for name, wanted in (("gtcrn", a.import_gtcrn), ("ul-unas", a.import_ul_unas)):
        if wanted:
            path = import_published(name, a.run, a.out)
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB), its .json and LICENSE-{name}")
            return 0
    note = {k: v for k, v in (("trained_on", a.data), ("data_licence", a.licence)) if v}
    try:
        path = ship(a.run, a.name, a.out, note=note, dtype=a.dtype, recipe=a.recipe, atten_lim_db=a.atten_lim)
    except UserError as e:
        print(f"ship: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}")
    with torch.no_grad():
        load_model(path)  # it loads back
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
