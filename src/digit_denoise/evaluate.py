"""MSE evaluation of a seed-representation run, next to the trivial baselines, with figures and audio.

``digit-denoise evaluate runs/NAME --split test`` writes into ``runs/NAME/eval-<split>/``::

    per_clip.csv     one row per (method, clip): id, speaker, digit, gender, mse
    summary.json     schema: {"split", "n_clips", "run", "model", "step", "manifest", "training" (see
                      compare.runinfo), "methods": {method: {"mse": mean, "n": n}},
                      "per_digit"|"per_speaker"|"per_gender": {method: {group: mean mse}}}
    mse_per_digit.png, mse_per_speaker.png   bar charts, one bar per method
    figures/<id>.png  waveform and spectrogram of clean / noisy / denoised
    audio/<id>_{clean,noisy,denoised}.wav

Methods in the table: the run's model, ``identity`` (the noisy input itself), ``global-mean`` (one
constant: the mean pixel of the training split's clean images), ``per-pixel-mean`` (the mean clean
training image) and, with ``--buggy RUN``, a run of the published buggy variant.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from .audio import atomic_path, write_audio
from .checkpoint import load_model
from .compare.runinfo import run_info
from .data.manifest import load_manifest, manifest_paths, select
from .data.pairs import BabblePool, make_pair
from .enhance import Denoiser
from .errors import UserError
from .figures import pair_figure, subplots
from .progress import progress, say
from .seed.cache import cached_seed_images
from .seed.features import SeedFeatureConfig


@torch.no_grad()
def predict_images(model: torch.nn.Module, noisy: np.ndarray, batch: int = 128) -> np.ndarray:
    """Array[N, H, W] noisy images → Array[N, H, W] model outputs (eval mode)."""
    model.eval()
    out = np.zeros_like(np.asarray(noisy, dtype=np.float32))
    dev = next(iter(model.parameters())).device
    for i in range(0, len(noisy), batch):
        x = torch.from_numpy(np.ascontiguousarray(noisy[i:i + batch], dtype=np.float32))[:, None].to(dev)
        out[i:i + batch] = model(x)[:, 0].cpu().numpy()
    return out


def _run_manifest(run: Path, manifest: str | None) -> str:
    if manifest:
        return manifest
    cfg = run / "config.json"
    if not cfg.is_file():
        raise UserError(f"{run}: not a training run (no config.json); pass a run folder made by 'digit-denoise train'")
    return manifest_paths(json.loads(cfg.read_text(encoding="utf-8"))["manifest"])[0]  # the first of a merged list


def group_means(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    """{method: {group value: mean mse}}."""
    acc: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[r["method"]][str(r[key]) or "unknown"].append(r["mse"])
    return {m: {g: float(np.mean(v)) for g, v in sorted(d.items())} for m, d in acc.items()}


def bar_chart(groups: dict[str, dict[str, float]], title: str, path: Path) -> None:

    methods = list(groups)
    keys = sorted({k for d in groups.values() for k in d}, key=lambda s: (len(s), s))
    width = 0.8 / max(len(methods), 1)
    fig, ax = subplots(figsize=(max(6, len(keys) * 0.7), 3.5), dpi=100)
    for i, m in enumerate(methods):
        ax.bar(np.arange(len(keys)) + i * width, [groups[m].get(k, np.nan) for k in keys], width, label=m)
    ax.set_xticks(np.arange(len(keys)) + width * (len(methods) - 1) / 2)
    ax.set_xticklabels(keys, rotation=0 if len(keys) <= 12 else 60)
    ax.set_ylabel("MSE (112×112, [0,1])")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def table(methods: dict[str, dict], per_digit, per_gender) -> str:
    """Text table: overall MSE per method (+ per gender)."""
    genders = sorted({g for d in per_gender.values() for g in d})
    head = f"{'method':<16} {'MSE':>9} " + " ".join(f"{g:>9}" for g in genders)
    lines = [head, "-" * len(head)]
    for m, v in methods.items():
        lines.append(f"{m:<16} {v['mse']:>9.5f} " + " ".join(f"{per_gender[m].get(g, float('nan')):>9.5f}"
                                                              for g in genders))
    return "\n".join(lines)


def evaluate(run: str | Path, split: str = "test", *, manifest: str | None = None, buggy: str | None = None,
             limit: int | None = None, n_examples: int = 3, phase: str = "noisy", gl_iters: int = 32,
             out: str | Path | None = None) -> dict:
    """Evaluate a run's best checkpoint on ``split``; write the report folder; return the summary."""
    run = Path(run)
    if not run.exists():
        raise UserError(f"{run}: run folder not found; train one with 'digit-denoise train --out {run}'")
    model, meta = load_model(run)
    if (meta.get("features") or {}).get("kind") != "seed":
        raise UserError(f"{run}: 'evaluate' reports MSE on the seed representation; this model uses "
                        f"'{(meta.get('features') or {}).get('kind')}' (use 'digit-denoise compare')")
    manifest_path = _run_manifest(run, manifest)
    rows_all = load_manifest(manifest_path)
    rows = select(rows_all, split, limit)
    feat = SeedFeatureConfig()
    pool = BabblePool(rows_all)
    test = cached_seed_images(rows, feat, pool=pool, name=split)
    train_clean = cached_seed_images(select(rows_all, "train"), feat, pool=pool, name="train")[:, 0]
    clean, noisy = np.asarray(test[:, 0]), np.asarray(test[:, 1])

    preds = {"model": predict_images(model, noisy)}
    if buggy:
        bmodel, bmeta = load_model(buggy)
        if bmeta.get("model") != "seed-buggy":
            say(f"warning: --buggy {buggy} is a '{bmeta.get('model')}' model, not seed-buggy")
        preds["seed-buggy"] = predict_images(bmodel, noisy)
    preds["identity"] = noisy
    preds["global-mean"] = np.full_like(clean, float(np.mean(train_clean)))
    preds["per-pixel-mean"] = np.broadcast_to(np.mean(train_clean, axis=0), clean.shape)

    per_clip = []
    for m, p in preds.items():
        mse = ((p - clean) ** 2).mean(axis=(1, 2))
        for r, v in zip(rows, mse):
            per_clip.append({"method": m, "id": r.id, "speaker": r.speaker, "digit": r.digit,
                             "gender": r.gender, "noise": r.noise, "snr": r.snr, "mse": float(v)})
    methods = {m: {"mse": float(np.mean([r["mse"] for r in per_clip if r["method"] == m])), "n": len(rows)}
               for m in preds}
    summary = {"run": str(run), "split": split, "n_clips": len(rows), "model": meta.get("model"),
               "step": meta.get("step"), "manifest": manifest_path, "training": run_info(str(run)),
               "methods": methods, "per_digit": group_means(per_clip, "digit"),
               "per_speaker": group_means(per_clip, "speaker"), "per_gender": group_means(per_clip, "gender")}

    folder = Path(out) if out else run / f"eval-{split}"
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "per_clip.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(per_clip[0]))
            w.writeheader()
            w.writerows(per_clip)
    with atomic_path(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    bar_chart(summary["per_digit"], f"MSE per digit ({split})", folder / "mse_per_digit.png")
    bar_chart(summary["per_speaker"], f"MSE per speaker ({split})", folder / "mse_per_speaker.png")
    if n_examples:
        write_examples(run, rows, pool, folder, n_examples, phase=phase, gl_iters=gl_iters)
    summary["table"] = table(methods, summary["per_digit"], summary["per_gender"])
    summary["folder"] = str(folder)
    return summary


def write_examples(run: Path, rows, pool: BabblePool, folder: Path, n: int, *, phase: str, gl_iters: int) -> None:
    """Waveform/spectrogram figures and WAVs (clean, noisy, denoised) for ``n`` clips spread over ``rows``."""
    den = Denoiser.from_checkpoint(run, phase=phase, gl_iters=gl_iters)
    picks = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, min(n, len(rows)))]
    for r in progress(picks, desc="examples", unit="clip"):
        clean, noisy, sr = make_pair(r, pool=pool)
        denoised = den.enhance(noisy, sr)
        safe = r.id.replace("/", "_")
        for tag, x in (("clean", clean), ("noisy", noisy), ("denoised", denoised)):
            write_audio(folder / "audio" / f"{safe}_{tag}.wav", x, sr, subtype="FLOAT", overwrite=True)
        pair_figure({"clean": clean, "noisy": noisy, "denoised": denoised}, sr,
                    folder / "figures" / f"{safe}.png", title=f"{r.id} ({r.noise} {r.snr} dB)")
