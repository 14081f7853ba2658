"""The training loop: plain and readable. Presets, checkpoints, resume, history, loss curve.

A run folder ``runs/NAME`` holds::

    config.json            the resolved TrainConfig
    history.jsonl / .csv   one record per validation (step, epoch, train_loss, val_loss, samples/s, ...)
    loss.png               train and validation loss curves
    checkpoints/last/      latest weights + optimizer/RNG/step state (resume point)
    checkpoints/best/      weights with the lowest validation loss

Rerunning the same command resumes from ``checkpoints/last``; ``--restart`` starts over. The data
order of each epoch and every clip's noise are pure functions of the seed, so a resumed run makes
the same steps as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .audio import atomic_path
from .checkpoint import load_state, model_meta, recover, save_checkpoint, set_rng_state, rng_state
from .data.pairs import BabblePool
from .data.seed_cache import cached_seed_images, epoch_order, seed_images
from .errors import UserError
from .features import SeedFeatureConfig
from .data.manifest import load_manifest, select
from .models import build_model, count_parameters, model_config
from .progress import progress, say


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json in the run folder)."""

    manifest: str = ""  # manifest CSV from `data prepare` (waveform models: a comma list is merged)
    out: str = ""  # run folder
    preset: str = "seed"  # a name from PRESETS; explicit options override it
    model: str = "seed"  # model family (see digit_denoise.models)
    model_config: dict = field(default_factory=dict)  # overrides of the model's config dataclass
    loss: str = "mse"  # training loss
    lr: float = 2e-4  # Adam learning rate
    batch_size: int = 128  # global batch size
    epochs: int = 6  # passes over the training split
    steps: int = 0  # planned optimiser steps of the whole run, across resumes (0 = epochs × steps per epoch)
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit)
    val_every: int = 75  # validate (and save last/best) every N steps
    save_every: int = 0  # also save `last` every N steps (0 = at validation and every 5 minutes)
    limit: int = 0  # use only N training clips (0 = all)
    val_limit: int = 0  # use only N validation clips (0 = all)
    seed: int = 0  # one seed for torch, numpy and random (and the data order)
    fresh_noise: bool = False  # new noise every epoch (evaluation noise stays fixed)
    threads: int = 0  # torch CPU threads (0 = torch's default)
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    schedule: str = "constant"  # learning-rate schedule: constant or cosine (to 5% at the last step)
    clip_grad: float = 0.0  # clip the gradient norm to this value (0 = off)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0 = off); validated and saved as best
    # waveform models only (noise made on the fly, see digit_denoise.data.batches):
    noise: str = "white,pink,brown,colored,babble"  # noise kinds and/or folders of noise recordings
    snr: str = "-10:15"  # SNR range (dB) of the training mixtures
    segment: float = 1.0  # seconds per training window
    augment: bool = True  # spectral tilt + speed/pitch on the clean speech
    speed: str = "0.85:1.15"  # speed/pitch factor range of the augmentation
    eq_db: float = 0.0  # random peaking EQ of the clean speech, ±dB (0 = off)
    babble_talkers: str = "3:7"  # talkers per babble mixture (LO:HI)
    snr_focus: str = ""  # LO:HI@SHARE: that share of the SNRs drawn from LO…HI dB (the rest from --snr)
    # speed (see `make bench`; none changes what is learned beyond float rounding):
    precision: str = "auto"  # auto (bf16 autocast on a CUDA GPU that has it, else fp32), fp32 or bf16
    compile: bool = False  # torch.compile the model (slow first steps; measured in `make bench`)
    channels_last: bool = False  # channels-last memory format (2-D models: seed U-Net)


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
    # STFT loss, 4× the steps. ~17× the training compute of `fast`: meant for a GPU (not trained on the 2-core CPU here).
    "best": dict(model="masknet", model_config={"channels": 256, "dilations": [1, 2, 4, 8, 16, 32] * 3,
                                                "mask": "complex"},
                 loss="sisdr+mrstft", lr=1e-3, batch_size=32, epochs=240, val_every=500, schedule="cosine",
                 clip_grad=5.0),
    # The wideband-speech recipe for this CPU (issue 17): a 256-channel, 12-block MaskNet with per-frame
    # channel norm and a bounded complex mask, compressed-spectrum + SI-SDR loss, EMA of the weights;
    # speech16k + FSDD, real noise (a folder's :seen part) beside coloured noise and 2–8-talker babble, mostly
    # −12…−4 dB, EQ/speed/level augmentation. Meant to run for hours on one thread and be resumed.
    "speech": dict(model="masknet", model_config={"channels": 256, "dilations": [1, 2, 4, 8, 16, 32] * 2,
                                                  "mask": "complex", "norm": "frame"},
                   loss="spec+sisdr", lr=1e-3, batch_size=32, steps=30000, epochs=1, val_every=500,
                   schedule="cosine", clip_grad=5.0, ema=0.999, snr="-12:10", snr_focus="-12:-4@0.7",
                   babble_talkers="2:8", speed="0.9:1.1", eq_db=15.0),
}

SAVE_SECONDS = 300.0  # wall-clock interval of the extra `last` saves between validations

# Options that may change when a run is resumed (they do not change what a step computes).
RESUMABLE_CHANGES = {"epochs", "max_steps", "val_every", "save_every", "threads", "device", "out", "manifest",
                     "compile", "channels_last", "precision"}
PRECISIONS = ("auto", "fp32", "bf16")


def manifest_paths(manifest: str) -> list[str]:
    """``a.csv`` or ``a.csv,b.csv`` → the manifest paths (waveform models train on their union)."""
    return [p.strip() for p in str(manifest).split(",") if p.strip()]


def load_rows(manifest: str) -> list:
    """All rows of one or several manifests (see :func:`manifest_paths`)."""
    return [r for p in manifest_paths(manifest) for r in load_manifest(p)]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32)."""
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


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
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}")
    return TrainConfig(**values)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a device name (cpu, cuda, cuda:1, mps, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when not distributed).

    Every rank builds the same global batch (a pure function of seed, epoch and position) and
    trains on its slice ``idx[rank::world]``; DistributedDataParallel averages the gradients, so
    the global batch size and the data are those of one process. Only rank 0 writes files.
    """

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def shard(self, idx: np.ndarray) -> slice:
        return slice(self.rank, None, self.world) if self.world > 1 else slice(None)

    def total(self, value: float, count: int) -> tuple[float, int]:
        """(Σ value, Σ count) over ranks."""
        if self.world == 1:
            return value, count
        import torch.distributed as dist

        t = torch.tensor([value, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]), int(t[1])

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------- data
class SeedData:
    """Clean/noisy seed images for the train and val splits (cached; fresh noise optional)."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        if len(manifest_paths(cfg.manifest)) != 1:
            raise UserError(f"--manifest {cfg.manifest}: seed models train on one manifest; merge corpora "
                            "with waveform models only")
        rows = load_manifest(cfg.manifest)
        self.feat = SeedFeatureConfig()
        self.pool = BabblePool(rows)
        self.train_rows = select(rows, "train", cfg.limit or None)
        self.val_rows = select(rows, "val", cfg.val_limit or None)
        self.fresh_noise = cfg.fresh_noise
        self.device = device
        self.train = cached_seed_images(self.train_rows, self.feat, pool=self.pool, name="train", device=device)
        self.val = cached_seed_images(self.val_rows, self.feat, pool=self.pool, name="val", device=device)
        self._epoch_cache: tuple[int, np.ndarray] | None = None

    def train_pairs(self, epoch: int) -> np.ndarray:
        """Array[N, 2, H, W] for ``epoch``: the cached fixed-noise images or this epoch's fresh noise."""
        if not self.fresh_noise or epoch == 0:
            return self.train
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            from .data.noise import NoiseConfig

            kinds = tuple(sorted({r.noise for r in self.train_rows if r.noise != "given"})) or ("white",)
            snrs = tuple(sorted({float(r.snr) for r in self.train_rows if r.snr}))
            noise = NoiseConfig(kinds=kinds, snr=snrs or (-8.0,))
            arr, _ = seed_images(self.train_rows, self.feat, pool=self.pool, noise=noise, epoch=epoch,
                                 device=self.device, desc=f"fresh noise, epoch {epoch}")
            self._epoch_cache = (epoch, arr)
        return self._epoch_cache[1]


    def train_batch(self, idx: np.ndarray, epoch: int, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_tensors(self.train_pairs(epoch), idx, self.device)

    def val_batches(self, batch: int):
        for i in range(0, len(self.val), batch):
            yield batch_tensors(self.val, np.arange(i, min(i + batch, len(self.val))), self.device)


def make_wave_data(cfg: TrainConfig, sample_rate: int):
    """:class:`wavedata.WaveData` for a waveform model (clips loaded at the model's rate)."""
    from .data.batches import (WaveBatchConfig, WaveData, parse_int_range, parse_snr_focus, parse_snr_range,
                           parse_wave_noise)

    rows = load_rows(cfg.manifest)
    lo_s, _, hi_s = str(cfg.speed).partition(":")
    try:
        speed = (float(lo_s), float(hi_s or lo_s))
    except ValueError:
        speed = (0.0, 0.0)
    if not 0.5 <= speed[0] <= speed[1] <= 2.0:
        raise UserError(f"--speed {cfg.speed!r}: expected LO:HI between 0.5 and 2, e.g. 0.9:1.1")
    if not (0 <= cfg.eq_db <= 30):
        raise UserError(f"--eq-db {cfg.eq_db}: give 0 (off) to 30 dB")
    bcfg = WaveBatchConfig(sample_rate=sample_rate, segment=cfg.segment, snr=parse_snr_range(cfg.snr),
                           kinds=parse_wave_noise(cfg.noise), augment=cfg.augment, speed=speed, eq_db=cfg.eq_db,
                           babble_talkers=parse_int_range(cfg.babble_talkers, "babble-talkers"),
                           snr_focus=parse_snr_focus(cfg.snr_focus))
    data = WaveData(select(rows, "train", cfg.limit or None), select(rows, "val", cfg.val_limit or None), bcfg,
                    cfg.seed, cfg.batch_size)
    return data


def batch_tensors(arr: np.ndarray, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) Tensor[B, 1, H, W] for the rows ``idx`` of an Array[N, 2, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(arr[idx]))
    return x[:, 1:2].to(device), x[:, 0:1].to(device)


def loss_fn(name: str, wave: bool):
    if wave:
        from .losses import LOSSES, wave_loss

        if name not in LOSSES:
            raise UserError(f"--loss {name!r}: waveform models support {', '.join(LOSSES)}")
        return wave_loss(name)
    if name == "mse":
        return F.mse_loss
    raise UserError(f"--loss {name!r}: the seed representation supports: mse")


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, batches, device: torch.device, loss) -> float:
    """Mean loss over ``batches`` of (noisy, clean), weighted by batch size (model in eval, then back)."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for noisy, clean in batches:
        total += float(loss(model(noisy.to(device)), clean.to(device))) * len(clean)
        n += len(clean)
    model.train(was_training)
    return total / max(n, 1)


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of a ``total``-step plan (epochs × steps per
    epoch; ``--max-steps`` only stops early): a pure function, so a resumed run repeats it exactly."""
    if cfg.schedule == "cosine" and total > 1:
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / (total - 1))))
    return cfg.lr


class EMA:
    """An exponential moving average of a model's floating-point weights (buffers are copied)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        src = model.state_dict()
        for name, t in self.module.state_dict().items():
            if t.is_floating_point():
                t.lerp_(src[name].detach(), 1.0 - self.decay)
            else:
                t.copy_(src[name])

    def state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load(self, state: dict | None, model: torch.nn.Module) -> None:
        """Restore a saved average (a run saved before EMA existed starts it from ``model``)."""
        self.module.load_state_dict(state if state is not None else model.state_dict())


# ------------------------------------------------------------------------------ history
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
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
    plt.close(fig)


# --------------------------------------------------------------------------------- loop
def _check_same_run(run: Path, cfg: TrainConfig) -> None:
    try:
        saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{run}: config.json missing or unreadable; pass --restart to start over") from None
    current = json.loads(json.dumps(asdict(cfg)))  # as it would be saved (tuples → lists)
    diffs = [f"{k}: {saved.get(k)!r} → {v!r}" for k, v in current.items()
             if k not in RESUMABLE_CHANGES and saved.get(k) != v]
    if diffs:
        raise UserError(f"{run}: holds a run with other settings ({'; '.join(diffs[:3])}); "
                        "pass --restart to start over or choose another --out")


def _prepare_run_folder(cfg: TrainConfig, restart: bool, run: Path, last_dir: Path, best_dir: Path) -> None:
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
        _check_same_run(run, cfg)
    elif run.exists() and any(run.iterdir()):
        if (run / "config.json").exists():
            shutil.rmtree(run)  # a run that died before its first checkpoint: start it again
        else:
            raise UserError(f"{run}: exists and is not a training run; choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    with atomic_path(run / "config.json") as tmp:
        tmp.write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")



def train(cfg: TrainConfig, restart: bool = False) -> dict:
    """Train (or resume) a run. Returns a summary dict (steps, best val loss, times, samples/s)."""
    if not cfg.out:
        raise UserError("--out: give a run folder, e.g. runs/seed")
    for name in ("batch_size", "epochs", "val_every"):
        if int(getattr(cfg, name)) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be at least 1")
    for name in ("steps", "max_steps", "limit", "val_limit", "seed", "threads"):
        if int(getattr(cfg, name)) < 0:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must not be negative")
    if cfg.schedule not in ("constant", "cosine"):
        raise UserError(f"--schedule {cfg.schedule!r}: choose constant or cosine")
    if not (cfg.segment > 0.05 and math.isfinite(cfg.segment)):
        raise UserError(f"--segment {cfg.segment}: give seconds > 0.05, e.g. 1.0")
    if not 0 <= cfg.ema < 1:
        raise UserError(f"--ema {cfg.ema}: give a decay in [0, 1), e.g. 0.999 (0 = off)")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise UserError(f"--lr {cfg.lr}: must be a positive number, e.g. 2e-4")
    run = Path(cfg.out)
    if cfg.precision not in PRECISIONS:
        raise UserError(f"--precision {cfg.precision!r}: choose one of {', '.join(PRECISIONS)}")
    for m in manifest_paths(cfg.manifest):
        if not Path(m).is_file():
            raise UserError(f"{m}: manifest not found; make one with 'digit-denoise data prepare'")
    # absolute paths, so `evaluate` finds them from any folder (it uses the first manifest's test split)
    cfg.manifest = ",".join(str(Path(m).resolve()) for m in manifest_paths(cfg.manifest))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = Dist(pick_device(cfg.device))
    device = dist.device
    try:
        return _train(cfg, restart, run, device, dist)
    finally:
        dist.close()


def _train(cfg: TrainConfig, restart: bool, run: Path, device: torch.device, dist: Dist) -> dict:
    last_dir, best_dir = run / "checkpoints" / "last", run / "checkpoints" / "best"
    if not dist.main:
        dist.barrier()  # rank 0 prepares the run folder (and fills the feature cache) first
    if run.exists() and not run.is_dir():
        raise UserError(f"{run}: is a file, not a run folder; choose another --out")
    if dist.main:
        _prepare_run_folder(cfg, restart, run, last_dir, best_dir)
    resuming = (last_dir / "state.pt").is_file()
    seed_everything(cfg.seed)
    mcfg = model_config(cfg.model, cfg.model_config)
    model = build_model(cfg.model, asdict(mcfg) if hasattr(mcfg, "__dataclass_fields__") else mcfg).to(device)
    wave = model.kind == "wave"
    loss = loss_fn(cfg.loss, wave)
    if wave:
        data = make_wave_data(cfg, mcfg.sample_rate)
        n, n_val = len(data.train), len(data.val)
        meta = model_meta(cfg.model, mcfg.to_dict(), {"kind": "wave"}, mcfg.sample_rate, {"preset": cfg.preset})
    else:
        data = SeedData(cfg, device)
        n, n_val = len(data.train_rows), len(data.val_rows)
        meta = model_meta(cfg.model, asdict(mcfg), {"kind": "seed", **asdict(data.feat)}, data.feat.sample_rate,
                          {"preset": cfg.preset})
    if dist.main:
        dist.barrier()  # the other ranks may now read the run folder and the cache
    if n == 0 or n_val == 0:
        raise UserError(f"{cfg.manifest}: needs both train and val rows")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.channels_last and not wave:
        model = model.to(memory_format=torch.channels_last)
    net = dist.wrap(model)  # what trains (DDP on several ranks); `model` is what is saved
    if cfg.compile:
        net = torch.compile(net)
    amp = autocast_dtype(cfg.precision, device)

    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = planned_steps = cfg.steps or steps_per_epoch * cfg.epochs  # the schedule spans the planned run
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    step, best, elapsed = 0, math.inf, 0.0
    window_state = [0.0, 0, 0]
    ema = EMA(model, cfg.ema) if cfg.ema else None
    if resuming:
        from safetensors.torch import load_file

        state = load_state(last_dir)
        model.load_state_dict(load_file(str(last_dir / "model.safetensors")))
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step, best, elapsed = int(state["step"]), float(state["best_val"]), float(state["elapsed"])
        window_state = state.get("window", [0.0, 0, 0])
        if ema is not None:
            ema.load(state.get("ema"), model)
        if dist.main:
            truncate_history(run, step)
        say(f"resuming {run} at step {step}/{total_steps}")
    say(f"training {cfg.model} ({count_parameters(model):,} parameters) on {n} clips, "
        f"{steps_per_epoch} steps/epoch, {total_steps} steps, device {device}"
        + (f", {dist.world} processes" if dist.world > 1 else ""))

    model.train()
    bar = progress(total=total_steps, initial=step, desc="train", unit="step")
    (window, window_n, samples), t0 = window_state, time.perf_counter()
    window, window_n, samples = float(window), int(window_n), int(samples)
    last_save = t0
    while step < total_steps:
        epoch, pos = divmod(step, steps_per_epoch)
        order = epoch_order(n, cfg.seed, epoch)
        idx = order[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        noisy, clean = data.train_batch(idx, epoch, pos)
        part = dist.shard(idx)
        noisy, clean = noisy[part].to(device), clean[part].to(device)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step, planned_steps)
        opt.zero_grad(set_to_none=True)
        if cfg.channels_last and not wave:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            pred = net(noisy)
        value = loss(pred.float(), clean)
        value.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        opt.step()
        if ema is not None:
            ema.update(model)
        step += 1
        samples += len(idx)
        lv, _ = dist.total(value.detach().item() * len(clean), len(clean))
        lv /= len(idx)
        window += lv * len(idx)
        window_n += len(idx)
        bar.update(1)
        bar.set_postfix(loss=f"{lv:.4f}", epoch=epoch + 1)
        if step % cfg.val_every == 0 or step == total_steps:
            kept = ema.module if ema is not None else model  # what is validated and saved as best
            val = evaluate_loss(kept, data.val_batches() if wave else data.val_batches(cfg.batch_size), device, loss)
            now = time.perf_counter()
            elapsed += now - t0
            record = {"step": step, "epoch": round(step / steps_per_epoch, 3), "train_loss": window / window_n,
                      "val_loss": val, "lr": learning_rate(cfg, step - 1, planned_steps), "elapsed_s": round(elapsed, 2),
                      "samples_per_s": round(samples / max(now - t0, 1e-9), 1)}
            if val < best:
                best = val
                if dist.main:
                    save_checkpoint(best_dir, kept, {**meta, "step": step, "val_loss": val})
            state = {"optimizer": opt.state_dict(), "rng": rng_state(), "step": step, "best_val": best,
                     "elapsed": elapsed, **({"ema": ema.state()} if ema is not None else {})}
            if dist.main:  # history first: a kill before `last` moves on only repeats this record
                append_history(run, record)
                save_checkpoint(last_dir, model, {**meta, "step": step, "val_loss": val}, state)
            dist.barrier()
            bar.write(f"step {step}: train {record['train_loss']:.5f}  val {val:.5f}  "
                      f"({record['samples_per_s']:.0f} samples/s)") if not bar.disable else None
            window, window_n, samples, t0 = 0.0, 0, 0, time.perf_counter()
            last_save = t0
        elif (cfg.save_every and step % cfg.save_every == 0) or (
                dist.world == 1 and time.perf_counter() - last_save > SAVE_SECONDS):
            # a resume point between validations (a killed run loses at most a few minutes)
            now = time.perf_counter()
            state = {"optimizer": opt.state_dict(), "rng": rng_state(), "step": step, "best_val": best,
                     "elapsed": elapsed + now - t0, "window": [window, window_n, samples],
                     **({"ema": ema.state()} if ema is not None else {})}
            if dist.main:
                save_checkpoint(last_dir, model, {**meta, "step": step}, state)
            dist.barrier()
            last_save = now
    bar.close()
    hist = read_history(run)
    summary = {"run": str(run), "steps": step, "best_val_loss": best, "elapsed_s": round(elapsed, 1),
               "samples_per_s": round(step * cfg.batch_size / max(elapsed, 1e-9), 1) if hist else None,
               "parameters": count_parameters(model)}
    if dist.main:
        with atomic_path(run / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    say(f"done: {step} steps, best val loss {best:.5f}, {elapsed:.0f} s → {run}")
    return summary


if __name__ == "__main__":  # torchrun --nproc-per-node N -m digit_denoise.train --manifest ... --out ...
    import sys

    from .cli import main

    raise SystemExit(main(["train", *sys.argv[1:]]))
