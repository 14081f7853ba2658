"""Tests for digit_denoise.metrics: SI-SDR exactness, PESQ/STOI on real speech, failure handling,
parallel == in-process, common-support summaries."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from digit_denoise import metrics as M

pytest.importorskip("pesq")
pytest.importorskip("pystoi")


def _white(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """``x`` plus white noise at ``snr_db`` (power ratio over the whole clip)."""
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(x.shape[-1])
    n *= math.sqrt(np.mean(x.astype(np.float64) ** 2) / (np.mean(n ** 2) * 10 ** (snr_db / 10)))
    return (x + n).astype(np.float32)


@pytest.fixture(scope="module")
def fsdd_files(fsdd_dir):
    return sorted((fsdd_dir / "recordings").glob("*.wav"))


@pytest.fixture(scope="module")
def long_clip(fsdd_files):
    """A real FSDD clip of at least 0.8 s (8 kHz mono float32), chosen deterministically."""
    for f in fsdd_files:
        if sf.info(str(f)).duration >= 0.8:
            x, sr = sf.read(str(f), dtype="float32")
            return x, sr
    pytest.skip("no FSDD clip of 0.8 s or more")


# ------------------------------------------------------------------------------------ SI-SDR

def _speechlike(n=16000, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=dtype) / 16000
    env = torch.sin(math.pi * t / t[-1]) ** 2
    return env * (torch.sin(2 * math.pi * 220 * t) + 0.5 * torch.sin(2 * math.pi * 660 * t)
                  + 0.1 * torch.randn(n, generator=g, dtype=dtype)) + 0.05  # with a DC offset


def test_si_sdr_scaled_copy_is_exactly_the_cap():
    s = _speechlike(dtype=torch.float32)
    assert M.si_sdr(s, 0.3 * s).item() == 100.0
    assert M.si_sdr(s, 0.3 * s + 0.7).item() == 100.0  # offset removed by zero-mean
    assert M.si_sdr(s, s, cap=50.0).item() == 50.0
    assert M.si_sdr(s.double(), -2.0 * s.double()).item() == 100.0  # any scale, sign included


def test_si_sdr_orthogonal_noise_exact_value():
    s = _speechlike(seed=1)
    s0 = s - s.mean()
    g = torch.Generator().manual_seed(2)
    n = torch.randn(s.shape[-1], generator=g, dtype=torch.float64)
    n = n - n.mean()
    n = n - (n @ s0) / (s0 @ s0) * s0  # orthogonal to the zero-mean reference, still zero-mean
    snr = 7.3
    n = n * torch.sqrt((s0 @ s0) / (n @ n) / 10 ** (snr / 10))
    assert abs(float(n @ s0)) < 1e-9 and abs(float(n.mean())) < 1e-12
    expected = 10 * math.log10(float(s0 @ s0) / float(n @ n))
    assert abs(expected - snr) < 1e-9
    got = M.si_sdr(s, s + n).item()
    assert abs(got - expected) < 1e-4
    # scale invariance: scaling the estimate (or the reference) changes nothing
    assert abs(M.si_sdr(s, 3.7 * (s + n)).item() - expected) < 1e-4
    assert abs(M.si_sdr(0.01 * s, s + n).item() - expected) < 1e-4


def test_si_sdr_batched_matches_per_item_and_sign():
    torch.manual_seed(0)
    ref = torch.randn(3, 2, 4000)
    est = ref + torch.randn(3, 2, 4000) * torch.tensor([0.1, 0.3, 1.0, 3.0, 0.01, 10.0]).view(3, 2, 1)
    batched = M.si_sdr(ref, est)
    assert batched.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert torch.allclose(batched[i, j], M.si_sdr(ref[i, j], est[i, j]), atol=1e-5)
    # worse estimate -> lower score
    flat = batched.flatten()
    order = torch.tensor([0.1, 0.3, 1.0, 3.0, 0.01, 10.0]).argsort()
    assert torch.all(flat[order][:-1] > flat[order][1:])
    s = ref[0, 0]
    noise = torch.randn(4000)
    assert M.si_sdr(s, s + 0.1 * noise) > M.si_sdr(s, s + 0.5 * noise) > M.si_sdr(s, s + 2 * noise)


def test_si_sdr_silent_reference_is_nan_and_degenerate_estimates():
    s = _speechlike(4000, dtype=torch.float32)
    assert math.isnan(M.si_sdr(torch.zeros(4000), s).item())
    assert math.isnan(M.si_sdr(torch.full((4000,), 0.5), s).item())  # constant = silent too
    assert M.si_sdr(s, torch.zeros(4000)).item() == -100.0  # silent estimate: worst, not nan
    batch = M.si_sdr(torch.stack([s, torch.zeros(4000)]), torch.stack([s + 0.1, s]))
    assert batch[0].item() == 100.0 and math.isnan(batch[1].item())


def test_si_sdr_loss_is_differentiable():
    torch.manual_seed(0)
    ref = torch.randn(4, 8000)
    ref[3] = 0.0  # silent reference: skipped by the loss, must not poison the gradient
    est = (ref + 0.5 * torch.randn(4, 8000)).requires_grad_(True)
    with torch.no_grad():
        est[2] = 0.3 * ref[2]  # capped item: zero gradient, no nan
    loss = M.si_sdr_loss(ref, est)
    assert torch.isfinite(loss)
    assert abs(loss.item() + torch.nanmean(M.si_sdr(ref, est.detach())).item()) < 1e-4
    loss.backward()
    assert torch.isfinite(est.grad).all()
    assert est.grad[0].abs().sum() > 0 and est.grad[1].abs().sum() > 0
    assert est.grad[3].abs().sum() == 0
    # a few gradient steps improve SI-SDR
    x = (ref[:2] + torch.randn(2, 8000)).requires_grad_(True)
    before = M.si_sdr(ref[:2], x.detach()).mean().item()
    opt = torch.optim.SGD([x], lr=50.0)
    for _ in range(5):
        opt.zero_grad()
        M.si_sdr_loss(ref[:2], x).backward()
        opt.step()
    assert M.si_sdr(ref[:2], x.detach()).mean().item() > before + 1.0


# ------------------------------------------------------------------------- alignment, MSE

def test_prepare_pair_resamples_and_aligns():
    ref = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    r, e = M.prepare_pair(ref, ref[:6000], 8000)
    assert r.dtype == np.float64 and r.shape == e.shape == (16000,)
    assert np.abs(e[12200:]).max() < 1e-4  # shorter estimate zero-padded (then resampled)
    r2, e2 = M.prepare_pair(ref, np.concatenate([ref, ref]), 8000)
    assert e2.shape == (16000,) and np.array_equal(r2, e2)  # longer estimate cropped (at 8 kHz)
    r3, e3 = M.prepare_pair(np.stack([ref, ref]), ref[None], 16000)  # stereo averaged, no resample
    assert r3.shape == e3.shape == (8000,) and np.allclose(r3, ref) and np.allclose(e3, ref)


def test_spectrogram_mse():
    torch.manual_seed(0)
    a, b = torch.rand(2, 1, 112, 112), torch.rand(2, 1, 112, 112)
    assert M.spectrogram_mse(a, a).item() == 0.0
    assert torch.allclose(M.spectrogram_mse(a, b), ((a - b) ** 2).mean())
    per = M.spectrogram_mse(a, b, reduction="none")
    assert per.shape == (2, 1) and torch.allclose(per.mean(), M.spectrogram_mse(a, b))
    with pytest.raises(ValueError):
        M.spectrogram_mse(a, b[:, :, :100])


# ------------------------------------------------------------------------------ PESQ / STOI

def test_pesq_stoi_identical_and_noisy(long_clip):
    x, sr = long_clip
    r, e = M.prepare_pair(x, x, sr)
    p, s = M.pesq_wb(r, e), M.stoi(r, e)
    assert p > 4.5 and s > 0.99
    _, nsy = M.prepare_pair(x, _white(x, 5.0), sr)
    pn, sn = M.pesq_wb(r, nsy), M.stoi(r, nsy)
    assert 1.0 <= pn < p - 1.0 and 0.3 < sn < s
    assert M.stoi(r, nsy, extended=True) < M.stoi(r, e, extended=True)
    # other input rates: pesq_wb resamples to 16 kHz itself
    assert M.pesq_wb(x, x, sr=sr) > 4.5


def test_pesq_stoi_failures_return_nan(long_clip):
    x, sr = long_clip
    r, e = M.prepare_pair(x, x, sr)
    z = np.zeros_like(r)
    short = r[: int(0.05 * 16000)]
    bad = e.copy()
    bad[100] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warnings leak out either
        for fn in (M.pesq_wb, M.stoi):
            assert math.isnan(fn(z, e))  # all-zero reference
            assert math.isnan(fn(short, short))  # 0.05 s clip
            assert math.isnan(fn(r, bad))  # non-finite estimate
            assert math.isnan(fn(np.zeros(0), np.zeros(0)))
    with pytest.raises(ValueError):
        M.pesq_wb(r, e[:-1])  # misalignment is a caller bug, not a bad clip


def _stoi_frames_after_silence_removal(r16: np.ndarray) -> int:
    """Number of STFT frames pystoi keeps (it needs >= 30 of them)."""
    import sys

    import pystoi.stoi  # noqa: F401  (the package re-exports a function of the same name)
    from pystoi import utils as U

    S = sys.modules["pystoi.stoi"]

    x = U.resample_oct(r16, S.FS, 16000)
    xs, _ = U.remove_silent_frames(x, x, S.DYN_RANGE, S.N_FRAME, S.N_FRAME // 2)
    return U.stft(xs, S.N_FRAME, S.NFFT, overlap=2).shape[0]


def test_failure_rates_on_real_fsdd(fsdd_files):
    """Every 50th FSDD clip (60 clips): count PESQ/STOI failures and check their causes."""
    sel = fsdd_files[::50]
    n_p = n_s = 0
    for f in sel:
        x, sr = sf.read(str(f), dtype="float32")
        r, e = M.prepare_pair(x, _white(x, 10.0), sr)
        p, s = M.pesq_wb(r, e), M.stoi(r, e)
        if math.isnan(p):
            n_p += 1
        else:
            assert 1.0 <= p <= 4.65
            assert len(x) / sr >= 0.25  # PESQ refuses anything shorter (BufferTooShortError)
        if math.isnan(s):
            n_s += 1
        else:
            assert 0.0 < s <= 1.0
        # STOI fails exactly when fewer than 30 frames (~0.4 s) survive pystoi's silence removal
        assert math.isnan(s) == (_stoi_frames_after_silence_removal(r) < 30)
    frac_p, frac_s = n_p / len(sel), n_s / len(sel)
    print(f"\nFSDD sample of {len(sel)}: PESQ nan {n_p} ({frac_p:.0%}), STOI nan {n_s} ({frac_s:.0%})")
    assert 0.0 < frac_p < 0.25  # about 1 in 15 over all of FSDD
    assert 0.25 < frac_s < 0.8  # about half over all of FSDD


# ---------------------------------------------------------------------- clip / parallel

def test_clip_metrics_improvements(long_clip):
    x, sr = long_clip
    noisy = _white(x, 0.0, seed=1)
    est = x + 0.3 * (noisy - x)  # partially denoised, ~10 dB
    m = M.clip_metrics(x, noisy, est, sr)
    assert set(m) == set(M.CLIP_METRICS)
    for k in ("si_sdr", "pesq", "stoi"):
        assert m[f"{k}_imp"] == pytest.approx(m[k] - m[f"{k}_noisy"])
        assert m[f"{k}_imp"] > 0
    assert abs(m["si_sdr_noisy"] - 0.0) < 0.5 and abs(m["si_sdr"] - 10.46) < 0.6
    perfect = M.clip_metrics(x, noisy, x, sr)
    assert perfect["si_sdr"] == 100.0 and perfect["pesq"] > 4.5
    # an estimate of another length is cropped/padded to the clean clip
    assert math.isfinite(M.clip_metrics(x, noisy, np.concatenate([est, est]), sr)["pesq"])


def _jobs(fsdd_files):
    jobs = []
    for i, f in enumerate(fsdd_files[:300:50]):
        x, sr = sf.read(str(f), dtype="float32")
        noisy = _white(x, 5.0, seed=i)
        jobs.append((f.stem, x, noisy, x + 0.5 * (noisy - x), sr))
    x = jobs[0][1][:400]  # 0.05 s: PESQ and STOI fail, SI-SDR still works
    jobs.append(("tiny", x, x + 0.01, x, 8000))
    return jobs


@pytest.mark.numerics
def test_compute_metrics_parallel_equals_in_process(fsdd_files):
    """Workers run one torch thread, this process may run more: equal to 1e-9 relative, not bit-exact
    (a long clip's float64 sums may be split over threads in one arm only)."""
    jobs = _jobs(fsdd_files)
    seq = M.compute_metrics(jobs, workers=0)
    par = M.compute_metrics(jobs, workers=2)
    assert [r["key"] for r in seq] == [j[0] for j in jobs] == [r["key"] for r in par]
    for a, b in zip(seq, par):
        for k in M.CLIP_METRICS:
            assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), \
                (a["key"], k)
    tiny = seq[-1]
    assert math.isnan(tiny["pesq"]) and math.isnan(tiny["stoi"]) and tiny["si_sdr"] == 100.0


@pytest.mark.parametrize("workers", [0, 2])
def test_compute_metrics_names_the_failing_clip(workers):
    good = np.ones(800, dtype=np.float32)
    jobs = [("ok", good, good, good, 8000), ("broken", np.zeros((2, 2, 2)), good, good, 8000)]
    with pytest.raises(RuntimeError, match="metrics failed for clip 'broken'"):
        M.compute_metrics(jobs, workers=workers)
