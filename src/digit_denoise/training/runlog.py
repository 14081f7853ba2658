"""The run folder: config.json, history (jsonl + csv), the loss plot, checkpoints and summary.

::

    config.json            the resolved TrainConfig
    history.jsonl / .csv   one record per validation (step, epoch, train_loss, val_loss, lr, samples/s, ...)
    loss.png               train and validation loss curves
    checkpoints/last/      latest weights + optimizer/EMA/RNG/step state (resume point)
    checkpoints/best/      weights with the lowest validation loss (the EMA's when it is on)
    summary.json           steps, best validation loss, training time, samples/s
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from ..audio import atomic_path
from ..checkpoint import recover
from ..errors import UserError
from ..figures import subplots
from .config import TrainConfig, saved_differences


def append_history(run: Path, record: dict) -> None:
    with open(run / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    records = read_history(run)
    keys = list(records[0].keys())
    with atomic_path(run / "history.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(records)
    plot_losses(records, run / "loss.png")


def read_history(run: Path) -> list[dict]:
    path = run / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_history(run: Path, step: int) -> None:
    """Drop records past ``step`` (they belong to work lost in a crash and will be redone)."""
    keep = [r for r in read_history(run) if r["step"] <= step]
    with atomic_path(run / "history.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")


def plot_losses(records: list[dict], path: Path) -> None:

    fig, ax = subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["train_loss"] for r in records], "o-", label="train", ms=3)
    ax.plot(steps, [r["val_loss"] for r in records], "s-", label="validation", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if all(r["train_loss"] > 0 and r["val_loss"] > 0 for r in records):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("training and validation loss")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def check_same_run(run: Path, cfg: TrainConfig) -> None:
    """A resumed run must have the settings it was started with (see :data:`config.RESUMABLE_CHANGES`)."""
    try:
        saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{run}: config.json missing or unreadable; pass --restart to start over") from None
    diffs = saved_differences(saved, cfg)
    if diffs:
        raise UserError(f"{run}: holds a run with other settings ({'; '.join(diffs[:3])}); "
                        "pass --restart to start over or choose another --out")


def prepare_run_folder(cfg: TrainConfig, restart: bool, run: Path, last_dir: Path, best_dir: Path) -> None:
    """Check, (re)create and describe the run folder (rank 0 only)."""
    for folder in (run, run / "checkpoints"):  # temp files of a write that was killed
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    recover(last_dir)
    recover(best_dir)
    is_run = (run / "config.json").is_file() or (last_dir / "state.pt").is_file()
    if run.exists() and any(run.iterdir()) and not is_run:
        # never delete (or train into) a folder that is not ours, not even with --restart
        raise UserError(f"{run}: exists and is not a training run; choose another --out")
    if restart and run.exists():
        shutil.rmtree(run)
    resuming = (last_dir / "state.pt").is_file()
    if resuming:
        check_same_run(run, cfg)
    elif run.exists() and any(run.iterdir()):
        if (run / "config.json").exists():
            shutil.rmtree(run)  # a run that died before its first checkpoint: start it again
        else:
            raise UserError(f"{run}: exists and is not a training run; choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    with atomic_path(run / "config.json") as tmp:
        tmp.write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")


def write_summary(run: Path, summary: dict) -> None:
    with atomic_path(run / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
