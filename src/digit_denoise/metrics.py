"""Speech metrics: SI-SDR (torch, differentiable), PESQ-WB, STOI, and per-clip rows (in parallel).

Conventions
-----------
* Every waveform metric is computed at **16 kHz** on **aligned, equal-length** mono signals
  (:func:`prepare_pair`). The clean reference decides the length: the estimate is cropped or
  zero-padded at the end to match it. Signals are start-aligned (no delay search): our
  denoisers are non-causal and add no latency.
* PESQ and STOI never raise for a bad clip (silent, too short, no utterance found, NaN
  samples...): they return ``float('nan')`` and the caller counts NaNs (``n_failed`` in
  :func:`compare.stats.summarize`). pystoi does not raise when a clip has fewer than 30 non-silent STFT
  frames (256-sample frames, hop 128 at 10 kHz: about 0.4 s of speech within 40 dB of the
  loudest frame); it warns and returns ``1e-5``. :func:`stoi` turns that sentinel into NaN.
* Group statistics over clips (common support, CIs) live with the comparison: :mod:`compare.stats`.

``pesq`` and ``pystoi`` are optional (``pip install 'digit-denoise[metrics]'``); they are
imported on first use.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from . import audio
from .errors import UserError
from .progress import progress

__all__ = [
    "METRIC_SR",
    "CLIP_METRICS",
    "si_sdr",
    "si_sdr_loss",
    "pesq_wb",
    "stoi",
    "prepare_pair",
    "spectrogram_mse",
    "clip_metrics",
    "compute_metrics",
]

METRIC_SR = 16000  # every waveform metric is computed at this rate
# Keys of the dict returned by clip_metrics (besides "key" added by compute_metrics).
CLIP_METRICS = ("si_sdr", "pesq", "stoi", "si_sdr_noisy", "pesq_noisy", "stoi_noisy",
                "si_sdr_imp", "pesq_imp", "stoi_imp")
SUMMARY_METRICS = ("si_sdr", "pesq", "stoi", "si_sdr_imp", "pesq_imp", "stoi_imp")


# --------------------------------------------------------------------------------------------
# SI-SDR
# --------------------------------------------------------------------------------------------

def si_sdr(reference, estimate, eps: float = 1e-8, cap: float = 100.0) -> torch.Tensor:
    """Scale-invariant SDR in dB, batched over leading dims: ``Tensor[..., T] -> Tensor[...]``.

    Both signals are made zero-mean, the estimate is projected on the reference
    (``target = <e, r> / ||r||^2 * r``, ``noise = e - target``) and
    ``SI-SDR = 10 log10(||target||^2 / ||noise||^2)``.

    * The result is limited to ``[-cap, cap]`` dB: a perfectly scaled copy gives exactly
      ``cap`` (not inf/nan), an estimate orthogonal to the reference or silent (constant)
      gives ``-cap``. ``cap=float('inf')`` removes the limit. The projection makes the
      score invariant to any non-zero scale, sign included (``-2 * r`` scores ``cap``).
    * A silent reference (zero-mean energy ``||r||^2 <= eps``) gives **nan**: SI-SDR is
      undefined there. :func:`si_sdr_loss` skips such items.
    * No eps is added to the ratio, so the value is exactly scale-invariant; the cap is
      applied by flooring each energy at ``10**(-cap/10)`` times the other, which keeps the
      function differentiable (zero gradient where capped, never nan).

    Args:
        reference, estimate: tensors (or arrays) of the same length ``T``; leading dims
            broadcast. Integer/half inputs are computed in float32.
        eps: reference energy (sum of squares after removing the mean) at or below which the
            reference counts as silent.
        cap: limit in dB.
    """
    ref = torch.as_tensor(reference)
    est = torch.as_tensor(estimate)
    if ref.shape[-1:] != est.shape[-1:]:
        raise ValueError(f"si_sdr: length mismatch, reference {tuple(ref.shape)} vs estimate "
                         f"{tuple(est.shape)}; align them first (prepare_pair)")
    dtype = torch.promote_types(ref.dtype, est.dtype)
    if not dtype.is_floating_point or dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    ref = ref.to(dtype)
    est = est.to(dtype)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    est = est - est.mean(dim=-1, keepdim=True)

    rr = (ref * ref).sum(-1)
    silent_ref = rr <= eps
    alpha = (est * ref).sum(-1) / rr.clamp_min(eps)
    target = alpha.unsqueeze(-1) * ref
    noise = est - target
    tt = (target * target).sum(-1)
    nn = (noise * noise).sum(-1)

    tau = 10.0 ** (-cap / 10.0)
    tiny = torch.finfo(dtype).tiny
    num = torch.maximum(tt, tau * nn).clamp_min(tiny)
    den = torch.maximum(nn, tau * tt).clamp_min(tiny)
    val = (10.0 * (torch.log10(num) - torch.log10(den))).clamp(-cap, cap)
    capv = torch.full_like(val, cap)
    val = torch.where(nn <= tau * tt, capv, val)  # exact cap (rounding could leave 99.99999)
    val = torch.where(tt <= tau * nn, -capv, val)  # orthogonal or silent estimate
    return torch.where(silent_ref, torch.full_like(val, float("nan")), val)


def si_sdr_loss(reference, estimate, eps: float = 1e-8, cap: float = 100.0) -> torch.Tensor:
    """``-mean(si_sdr)`` over all items, skipping items with a silent reference (nan).

    Returns a scalar tensor; 0 (with a graph) when every reference in the batch is silent.
    """
    v = si_sdr(reference, estimate, eps=eps, cap=cap)
    ok = ~torch.isnan(v)
    if not bool(ok.any()):
        return (torch.as_tensor(estimate).to(v.dtype) * 0.0).sum()
    return -torch.where(ok, v, torch.zeros_like(v)).sum() / ok.sum()


# --------------------------------------------------------------------------------------------
# PESQ / STOI (never raise for bad clips)
# --------------------------------------------------------------------------------------------

def _as_mono(x, name: str) -> np.ndarray:
    """``(T,)``, ``(1, T)`` or ``(C, T)`` array/tensor -> float64 ``(T,)`` (channels averaged)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a.mean(axis=0)
    elif a.ndim != 1:
        raise ValueError(f"{name}: expected a mono (T,) or (channels, T) signal, got shape {a.shape}")
    return a


def _usable(ref: np.ndarray, est: np.ndarray) -> bool:
    """Cheap checks shared by PESQ and STOI: finite, non-silent reference, non-empty."""
    return (ref.size > 0 and np.isfinite(ref).all() and np.isfinite(est).all()
            and float(np.max(np.abs(ref))) > 0.0)


def _pair(ref, est, fn: str) -> tuple[np.ndarray, np.ndarray]:
    r, e = _as_mono(ref, f"{fn} reference"), _as_mono(est, f"{fn} estimate")
    if r.shape != e.shape:
        raise ValueError(f"{fn}: length mismatch ({r.size} vs {e.size} samples); "
                         "align them first with prepare_pair")
    return r, e


def pesq_wb(ref, est, sr: int = METRIC_SR) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO about 1.04..4.64) of ``est`` against ``ref``.

    Signals of any rate are resampled to 16 kHz. Returns ``nan`` (never raises) when the
    library fails on the clip (``NoUtterancesError``, buffer too short, silent reference,
    non-finite samples...). Length mismatch is a caller bug and raises ``ValueError``.
    """
    try:
        from pesq import pesq as _pesq
    except ImportError:
        raise UserError("PESQ needs the 'pesq' package; pip install 'digit-denoise[metrics]'") from None
    r, e = _pair(ref, est, "pesq_wb")
    if not _usable(r, e):
        return float("nan")
    if sr != METRIC_SR:
        r = audio.resample(r, sr, METRIC_SR).astype(np.float64)
        e = audio.resample(e, sr, METRIC_SR).astype(np.float64)
    try:
        v = float(_pesq(METRIC_SR, r, e, "wb"))
    except Exception:  # PesqError subclasses, ValueError... a bad clip is a NaN, not a crash
        return float("nan")
    return v if math.isfinite(v) else float("nan")


def stoi(ref, est, sr: int = METRIC_SR, extended: bool = False) -> float:
    """STOI (or extended STOI) of ``est`` against ``ref`` via pystoi, in about [0, 1].

    Returns ``nan`` (never raises) for a clip pystoi cannot score: silent reference, fewer than
    30 non-silent frames (pystoi warns and returns 1e-5; we return nan instead), shorter than
    one frame, non-finite samples. Length mismatch raises ``ValueError``.
    """
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        raise UserError("STOI needs the 'pystoi' package; pip install 'digit-denoise[metrics]'") from None
    r, e = _pair(ref, est, "stoi")
    if not _usable(r, e):
        return float("nan")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            v = float(_stoi(r, e, sr, extended=extended))
    except Exception:
        return float("nan")
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return float("nan")
    return v if math.isfinite(v) else float("nan")


# --------------------------------------------------------------------------------------------
# Alignment and per-clip metrics
# --------------------------------------------------------------------------------------------

def prepare_pair(ref, est, sr_in: int, sr: int = METRIC_SR) -> tuple[np.ndarray, np.ndarray]:
    """Make ``(ref, est)`` comparable: mono float64, resampled ``sr_in -> sr``, equal length.

    Channels are averaged. The reference decides the length: a longer estimate is cropped at
    the end, a shorter one zero-padded at the end (missing output counts as silence). Both
    start at sample 0 (no delay search).
    Returns ``(ref16, est16)``, both ``float64 (T,)``.
    """
    r = _as_mono(ref, "reference")
    e = _as_mono(est, "estimate")
    n = r.shape[0]  # align first (at sr_in), so both go through the same resampling
    if e.shape[0] >= n:
        e = e[:n]
    else:
        e = np.concatenate([e, np.zeros(n - e.shape[0], dtype=np.float64)])
    if sr_in != sr:
        r = audio.resample(r, sr_in, sr).astype(np.float64)
        e = audio.resample(e, sr_in, sr).astype(np.float64)
    return np.ascontiguousarray(r), np.ascontiguousarray(e)


def spectrogram_mse(ref_img, est_img, reduction: str = "mean") -> torch.Tensor:
    """Plain MSE between two seed images (``[0, 1]``, ``Tensor[..., 112, 112]``).

    ``reduction="mean"``: one scalar over everything; ``"none"``: one value per image (mean
    over the last two dims). Feature extraction lives in :mod:`digit_denoise.features`.
    """
    a = torch.as_tensor(ref_img)
    b = torch.as_tensor(est_img)
    if a.shape != b.shape:
        raise ValueError(f"spectrogram_mse: shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}")
    if not a.is_floating_point():
        a = a.float()
    b = b.to(a.dtype) if b.is_floating_point() else b.to(a.dtype)
    d = (b - a) ** 2
    if reduction == "mean":
        return d.mean()
    if reduction == "none":
        return d.mean(dim=(-2, -1))
    raise ValueError(f"spectrogram_mse: reduction must be 'mean' or 'none', got {reduction!r}")


def _si_sdr_float(ref: np.ndarray, est: np.ndarray) -> float:
    with torch.no_grad():
        return float(si_sdr(torch.from_numpy(ref), torch.from_numpy(est)))


def clip_metrics(clean, noisy, estimate, sr: int) -> dict[str, float]:
    """All metrics of one clip, at 16 kHz on aligned equal-length signals (:func:`prepare_pair`).

    Returns floats (nan where a metric failed): ``si_sdr``, ``pesq``, ``stoi`` (of the
    estimate), ``si_sdr_noisy``, ``pesq_noisy``, ``stoi_noisy`` (of the noisy input) and the
    improvements ``si_sdr_imp``, ``pesq_imp``, ``stoi_imp`` = metric(estimate) - metric(noisy).
    """
    ref, est = prepare_pair(clean, estimate, sr)
    _, nsy = prepare_pair(clean, noisy, sr)
    out: dict[str, float] = {}
    for name, fn in (("si_sdr", _si_sdr_float), ("pesq", pesq_wb), ("stoi", stoi)):
        v_est = fn(ref, est)
        v_nsy = fn(ref, nsy)
        out[name] = v_est
        out[f"{name}_noisy"] = v_nsy
        out[f"{name}_imp"] = v_est - v_nsy  # nan if either is nan
    return {k: out[k] for k in CLIP_METRICS}


# --------------------------------------------------------------------------------------------
# Parallel computation
# --------------------------------------------------------------------------------------------

def _worker_init() -> None:
    """One torch thread per worker: the pool provides the parallelism."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set / already used
        pass


def _job_row(job: tuple) -> dict[str, Any]:
    key, clean, noisy, estimate, sr = job
    row: dict[str, Any] = {"key": key}
    row.update(clip_metrics(clean, noisy, estimate, sr))
    return row


def _chunk_rows(chunk: list[tuple]) -> list[dict[str, Any]]:
    """Worker side: rows of a few jobs (fewer round trips than one future per clip)."""
    rows = []
    for job in chunk:
        try:
            rows.append(_job_row(job))
        except Exception as e:
            raise RuntimeError(f"metrics failed for clip {job[0]!r}: {e}") from e
    return rows


def _pool_context():
    # 'forkserver' where available (Linux: cheap and safe with torch threads), else 'spawn'.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def compute_metrics(jobs: Sequence[tuple[Hashable, Any, Any, Any, int]],
                    workers: int | None = None, desc: str = "metrics") -> list[dict[str, Any]]:
    """Run :func:`clip_metrics` over ``jobs`` = ``[(key, clean, noisy, estimate, sr), ...]``.

    Args:
        workers: worker processes; ``None`` -> ``min(os.cpu_count(), 8)``; 0 or 1 -> in this
            process. Workers use the 'forkserver' start method ('spawn' where unavailable)
            and one torch thread each.
    Returns:
        One dict per job, **in input order**: ``{"key": key, **clip_metrics(...)}``.
        A clip the metric libraries cannot score gives nan values, not an exception; an
        unexpected error is re-raised as ``RuntimeError`` naming the clip's key.
    """
    jobs = list(jobs)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = max(0, min(int(workers), len(jobs)))
    if workers <= 1:
        rows = []
        for job in progress(jobs, total=len(jobs), desc=desc, unit="clip"):
            try:
                rows.append(_job_row(job))
            except Exception as e:
                raise RuntimeError(f"metrics failed for clip {job[0]!r}: {e}") from e
        return rows

    # Small chunks: few round trips, yet enough of them to balance the load and move the bar.
    size = max(1, min(16, len(jobs) // (workers * 8)))
    starts = range(0, len(jobs), size)
    results: list[list[dict[str, Any]] | None] = [None] * len(starts)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                             initializer=_worker_init) as ex:
        futures = {ex.submit(_chunk_rows, jobs[s:s + size]): c for c, s in enumerate(starts)}
        pending = set(futures)
        with progress(total=len(jobs), desc=desc, unit="clip") as bar:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in done:
                    err = f.exception()
                    if err is not None:
                        for p in pending:
                            p.cancel()
                        if isinstance(err, RuntimeError) and "metrics failed for clip" in str(err):
                            raise RuntimeError(str(err)) from err
                        c = futures[f]  # e.g. a worker died (BrokenProcessPool)
                        raise RuntimeError(f"metrics failed in clips {jobs[starts[c]][0]!r}...: "
                                           f"{type(err).__name__}: {err}") from err
                    results[futures[f]] = f.result()
                    bar.update(len(results[futures[f]]))
    return [row for chunk in results for row in chunk]  # type: ignore[union-attr]
