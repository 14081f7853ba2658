"""The training loop: plain and readable. Build, resume, step, validate, save.

Rerunning the same command resumes from ``checkpoints/last`` (through the same checkpoint loader as
every other use of a model); ``--restart`` starts over. The data order of each epoch and every
clip's noise are pure functions of the seed, so a resumed run makes the same steps as an
uninterrupted one; the learning-rate schedule follows the planned step count across resumes.
"""

from __future__ import annotations

import copy
import functools
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_model, load_state, model_meta, rng_state, save_checkpoint, set_rng_state
from ..data.manifest import manifest_paths
from ..data.order import epoch_order
from ..errors import UserError
from ..losses import LOSSES, guarded, wave_loss
from ..models import build_model, count_parameters, model_config
from ..progress import progress, say
from .config import TrainConfig, check, learning_rate
from .distributed import Dist, autocast_dtype, compile_model, pick_device
from .inputs import SeedData, make_wave_data
from .runlog import append_history, prepare_run_folder, read_history, truncate_history, write_summary

SAVE_SECONDS = 300.0  # wall-clock interval of the extra `last` saves between validations


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _blind(model, noisy):
    """A personalised model whose FiLM is zero, run without a voice (its output does not depend on one)."""
    return model(noisy, noisy.new_zeros(noisy.shape[0], model.voice_dim))


def loss_fn(name: str, wave: bool, no_harm: float = 0.0, teacher=None, no_regress: float = 0.0):
    """``f(estimate, clean, noisy) -> scalar``: the loss called ``name`` (+ the no-harm / no-regress guards)."""
    if wave:
        if name not in LOSSES:
            raise UserError(f"--loss {name!r}: waveform models support {', '.join(LOSSES)}")
        return guarded(wave_loss(name), no_harm, teacher, no_regress)
    for flag, value in (("--no-harm", no_harm), ("--no-regress", no_regress)):
        if value:
            raise UserError(f"{flag} {value}: only waveform models (SI-SDR of audio) support it; drop it")
    if name == "mse":
        return guarded(F.mse_loss)
    raise UserError(f"--loss {name!r}: the seed representation supports: mse")


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, batches, device: torch.device, loss) -> float:
    """Mean loss over ``batches`` of (noisy, clean[, voice]), weighted by batch size (model in eval, then back)."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for noisy, clean, *voice in batches:
        noisy = noisy.to(device)
        total += float(loss(model(noisy, *(v.to(device) for v in voice)), clean.to(device), noisy)) * len(clean)
        n += len(clean)
    model.train(was_training)
    return total / max(n, 1)


class EMA:
    """An exponential moving average of a model's floating-point weights (buffers are copied)."""

    def __init__(self, model: torch.nn.Module, decay: float):
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


def train(cfg: TrainConfig, restart: bool = False) -> dict:
    """Train (or resume) a run. Returns a summary dict (steps, best val loss, times, samples/s)."""
    check(cfg)
    for m in manifest_paths(cfg.manifest):
        if not Path(m).is_file():
            raise UserError(f"{m}: manifest not found; make one with 'digit-denoise data prepare'")
    # absolute paths, so `evaluate` finds them from any folder (it uses the first manifest's test split);
    # `tools/ship.py` makes them relative again in a shipped model
    cfg.manifest = tuple(str(Path(m).resolve()) for m in manifest_paths(cfg.manifest))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = Dist(pick_device(cfg.device))
    try:
        return Loop(cfg, restart, dist).run()
    finally:
        dist.close()


class Loop:
    """One run: the model, its data, the optimiser, the EMA and the counters, from start or resume point."""

    def __init__(self, cfg: TrainConfig, restart: bool, dist: Dist):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        self.run_dir = run = Path(cfg.out)
        self.last_dir, self.best_dir = run / "checkpoints" / "last", run / "checkpoints" / "best"
        if not dist.main:
            dist.barrier()  # rank 0 prepares the run folder (and fills the feature cache) first
        if run.exists() and not run.is_dir():
            raise UserError(f"{run}: is a file, not a run folder; choose another --out")
        if dist.main:
            prepare_run_folder(cfg, restart, run, self.last_dir, self.best_dir)
        seed_everything(cfg.seed)
        self._build()
        if dist.main:
            dist.barrier()  # the other ranks may now read the run folder and the cache
        self._wrap()  # after the barrier: DistributedDataParallel's set-up is itself collective
        self.steps_per_epoch = math.ceil(self.n / cfg.batch_size)
        self.planned = cfg.steps or self.steps_per_epoch * cfg.epochs  # what the schedule spans
        self.total = min(self.planned, cfg.max_steps) if cfg.max_steps else self.planned
        self.step, self.best, self.elapsed = 0, math.inf, 0.0
        self.window = [0.0, 0, 0]  # loss sum, samples, samples since the last record
        if (self.last_dir / "state.pt").is_file():
            self._resume()

    def _build(self) -> None:
        cfg = self.cfg
        mcfg = model_config(cfg.model, cfg.model_config)
        self.model = model = build_model(cfg.model, mcfg).to(self.device)
        if cfg.init:
            self._init_from(cfg.init)
        self.wave = model.kind == "wave"
        teacher = None
        if cfg.no_regress and self.wave and cfg.teacher:  # another model, e.g. the default a new model must beat
            teacher, _ = load_model(cfg.teacher, device=self.device)
            teacher.requires_grad_(False)
            if getattr(teacher, "voice_dim", 0) or teacher.kind != "wave":
                raise UserError(f"--teacher {cfg.teacher}: give a blind waveform model")
        elif cfg.no_regress and self.wave:  # the --init weights, frozen (also on a resume: set before it loads)
            teacher = copy.deepcopy(model).eval().requires_grad_(False)
            if model.voice_dim:  # a personalised model from a blind one: its FiLM is zero, so no voice is needed
                if any(float(p.abs().max()) > 0 for p in teacher.film.parameters()):
                    raise UserError(f"--no-regress {cfg.no_regress}: the --init model is already personalised; "
                                    "the guard compares with a blind --init model only")
                teacher = functools.partial(_blind, teacher)
        self.loss = loss_fn(cfg.loss, self.wave, cfg.no_harm, teacher, cfg.no_regress)
        if self.wave:
            self.data = make_wave_data(cfg, model.sample_rate, voice=model.voice_dim > 0)
            self.n, n_val = len(self.data.train), len(self.data.val)
            features = {"kind": "wave"}
        else:
            self.data = SeedData(cfg, self.device)
            self.n, n_val = len(self.data.train_rows), len(self.data.val_rows)
            features = {"kind": "seed", **self.data.feat.to_dict()}
        if self.n == 0 or n_val == 0:
            raise UserError(f"{','.join(cfg.manifest)}: needs both train and val rows")
        self.meta = model_meta(cfg.model, mcfg.to_dict(), features, model.sample_rate, {"preset": cfg.preset})

    def _init_from(self, path: str) -> None:
        """Weights from a model file before step 0: the same family, a configuration they fit."""
        source, meta = load_model(path)
        if meta.get("model") != self.cfg.model:
            raise UserError(f"--init {path}: holds a '{meta.get('model')}' model, this run trains '{self.cfg.model}'")
        state = self.model.adapt_state(source.state_dict())
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:160]
            raise UserError(f"--init {path}: its weights do not fit this model's config ({first})") from None
        say(f"initialised from {path}")

    def _wrap(self) -> None:
        cfg, model = self.cfg, self.model
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.ema = EMA(model, cfg.ema) if cfg.ema else None
        if cfg.channels_last and not self.wave:
            self.model = model = model.to(memory_format=torch.channels_last)
        self.net = self.dist.wrap(model)  # what trains (DDP on several ranks); `model` is what is saved
        if cfg.compile:
            self.net = compile_model(self.net)
        self.amp = autocast_dtype(cfg.precision, self.device)

    def _resume(self) -> None:
        state = load_state(self.last_dir)
        saved, _ = load_model(self.last_dir)  # the same loader as evaluate / denoise / the API
        self.model.load_state_dict(saved.state_dict())
        self.opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.step, self.best, self.elapsed = int(state["step"]), float(state["best_val"]), float(state["elapsed"])
        self.window = list(state.get("window", [0.0, 0, 0]))
        if self.ema is not None:
            self.ema.load(state.get("ema"), self.model)
        if self.dist.main:
            truncate_history(self.run_dir, self.step)
        say(f"resuming {self.run_dir} at step {self.step}/{self.total}")

    def _state(self, elapsed: float, window: list | None = None) -> dict:
        return {"optimizer": self.opt.state_dict(), "rng": rng_state(), "step": self.step, "best_val": self.best,
                "elapsed": elapsed, **({"window": window} if window else {}),
                **({"ema": self.ema.state()} if self.ema is not None else {})}

    def run(self) -> dict:
        cfg, dist = self.cfg, self.dist
        say(f"training {cfg.model} ({count_parameters(self.model):,} parameters) on {self.n} clips, "
            f"{self.steps_per_epoch} steps/epoch, {self.total} steps, device {self.device}"
            + (f", {dist.world} processes" if dist.world > 1 else ""))
        self.model.train()
        bar = progress(total=self.total, initial=self.step, desc="train", unit="step")
        t0 = last_save = time.perf_counter()
        while self.step < self.total:
            lv, epoch = self._one_step()
            bar.update(1)
            bar.set_postfix(loss=f"{lv:.4f}", epoch=epoch + 1)
            out_of_time = self._out_of_time(t0)
            if self.step % cfg.val_every == 0 or self.step == self.total or out_of_time:
                record = self._validate(t0)
                if not bar.disable:
                    bar.write(f"step {self.step}: train {record['train_loss']:.5f}  val {record['val_loss']:.5f}  "
                              f"({record['samples_per_s']:.0f} samples/s)")
                t0 = last_save = time.perf_counter()
                if out_of_time:
                    say(f"--max-minutes {cfg.max_minutes:g}: stopping at step {self.step} (rerun with a larger "
                        "value to go on)")
                    break
            elif (cfg.save_every and self.step % cfg.save_every == 0) or (
                    dist.world == 1 and time.perf_counter() - last_save > SAVE_SECONDS):
                now = time.perf_counter()  # a resume point between validations: a kill loses minutes at most
                if dist.main:
                    save_checkpoint(self.last_dir, self.model, {**self.meta, "step": self.step},
                                    self._state(self.elapsed + now - t0, list(self.window)))
                dist.barrier()
                last_save = now
        bar.close()
        return self._finish()

    def _out_of_time(self, t0: float) -> bool:
        """True once the run has trained ``--max-minutes`` (across resumes); every rank agrees (rank 0 decides)."""
        if not self.cfg.max_minutes:
            return False
        over = self.elapsed + time.perf_counter() - t0 >= self.cfg.max_minutes * 60
        if self.dist.world > 1:
            over = self.dist.total(float(over and self.dist.main), 1)[0] > 0
        return over

    def _one_step(self) -> tuple[float, int]:
        cfg = self.cfg
        epoch, pos = divmod(self.step, self.steps_per_epoch)
        idx = epoch_order(self.n, cfg.seed, epoch)[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        noisy, clean, *voice = self.data.train_batch(idx, epoch, pos)
        part = self.dist.shard(idx)
        noisy, clean = noisy[part].to(self.device), clean[part].to(self.device)
        voice = [v[part].to(self.device) for v in voice]  # a personalised model's enrolments
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, self.step, self.planned)
        self.opt.zero_grad(set_to_none=True)
        if cfg.channels_last and not self.wave:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            pred = self.net(noisy, *voice)
        value = self.loss(pred.float(), clean, noisy)
        value.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        total, _ = self.dist.total(value.detach().item() * len(clean), len(clean))
        lv = total / len(idx)
        self.window = [self.window[0] + lv * len(idx), self.window[1] + len(idx), self.window[2] + len(idx)]
        return lv, epoch

    def _validate(self, t0: float) -> dict:
        """Validate (the EMA when it is on), write a history record, save `best` and `last`."""
        cfg = self.cfg
        kept = self.ema.module if self.ema is not None else self.model  # what is validated and saved as best
        batches = self.data.val_batches() if self.wave else self.data.val_batches(cfg.batch_size)
        val = evaluate_loss(kept, batches, self.device, self.loss)
        now = time.perf_counter()
        self.elapsed += now - t0
        loss_sum, n, samples = self.window
        record = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 3),
                  "train_loss": loss_sum / max(n, 1), "val_loss": val,
                  "lr": learning_rate(cfg, self.step - 1, self.planned), "elapsed_s": round(self.elapsed, 2),
                  "samples_per_s": round(samples / max(now - t0, 1e-9), 1)}
        if val < self.best:
            self.best = val
            if self.dist.main:
                save_checkpoint(self.best_dir, kept, {**self.meta, "step": self.step, "val_loss": val})
        if self.dist.main:  # history first: a kill before `last` moves on only repeats this record
            append_history(self.run_dir, record)
            save_checkpoint(self.last_dir, self.model, {**self.meta, "step": self.step, "val_loss": val},
                            self._state(self.elapsed))
        self.dist.barrier()
        self.window = [0.0, 0, 0]
        return record

    def _finish(self) -> dict:
        hist = read_history(self.run_dir)
        summary = {"run": str(self.run_dir), "steps": self.step, "best_val_loss": self.best,
                   "elapsed_s": round(self.elapsed, 1),
                   "samples_per_s": round(self.step * self.cfg.batch_size / max(self.elapsed, 1e-9), 1) if hist else None,
                   "parameters": count_parameters(self.model)}
        if self.dist.main:
            write_summary(self.run_dir, summary)
        say(f"done: {self.step} steps, best val loss {self.best:.5f}, {self.elapsed:.0f} s → {self.run_dir}")
        return summary
