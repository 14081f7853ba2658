"""``make bench``: old/naive path vs new path, measured side by side in the same run, with ratios.

1. feature prep per clean/noisy pair: librosa + OpenCV per clip (the seed notebook) vs the batched
   torch path (:class:`features.SeedFeatures`, 128 clips per call);
2. seed U-Net training: samples/s and GFLOP/s with a naive loop that preprocesses every sample
   with librosa + OpenCV each step (as the notebook did) vs cached batched features;
   2b. CPU runtime settings (glibc malloc tuning, torch.compile, bf16 autocast, channels_last),
   each variant in its own process;
3. inference real-time factor (one CPU thread) per model vs noisereduce (and RNNoise / DFN3 when
   installed);
4. peak RSS of denoising a long file with the streaming CLI.

Clips are FSDD's (``../shared/data/fsdd``) when present, else synthetic. Results also go to
``bench/results/bench.json``. Run: ``python -m bench.run_all [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
RESULTS = REPO / "bench" / "results"


def clips(n: int, sr: int = 48000) -> list[np.ndarray]:
    from digit_denoise.audio import load_audio

    files = sorted(FSDD.glob("*.wav"))[:n] if FSDD.is_dir() else []
    if files:
        return [load_audio(f, sr=sr, mono=True)[0][0] for f in files]
    rng = np.random.default_rng(0)
    return [rng.standard_normal(int(sr * rng.uniform(0.3, 0.9))).astype(np.float32) * 0.1 for _ in range(n)]


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def table(title: str, rows: list[tuple], head: tuple) -> None:
    print(f"\n{title}")
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(str(h).ljust(w[i]) for i, h in enumerate(head)))
    for r in rows:
        print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))


def bench_features(n: int) -> dict:
    import cv2
    import librosa

    from digit_denoise.seed.cache import FILL_BATCH_CPU
    from digit_denoise.seed.features import SeedFeatureConfig, SeedFeatures, pad_batch

    waves = clips(n)
    rng = np.random.default_rng(1)
    pairs = [(w, w + 0.05 * rng.standard_normal(len(w)).astype(np.float32)) for w in waves]

    def reference():
        for pair in pairs:
            for y in pair:
                S = librosa.feature.melspectrogram(y=y, sr=48000, n_fft=2048, hop_length=512, n_mels=256)
                db = librosa.power_to_db(S, ref=np.max, top_db=80)
                img = (db - db.min()) / (db.max() - db.min() + 1e-12)
                cv2.resize(img.astype(np.float32), (112, 112), interpolation=cv2.INTER_AREA)

    fe = SeedFeatures(SeedFeatureConfig())

    def batched(batch: int, order: list[int]):
        def run():
            for side in (0, 1):
                ws = [pairs[i][side] for i in order]
                for i in range(0, len(ws), batch):
                    x, lengths = pad_batch(ws[i:i + batch])
                    with torch.no_grad():
                        fe(x, lengths)
        return run

    def workers(k: int):
        """The same batched calls split over ``k`` single-thread processes (images shipped back)."""
        import concurrent.futures as cf
        import multiprocessing as mp

        def run():
            ws = [pairs[i][side] for side in (0, 1) for i in by_length]
            jobs = [ws[i:i + FILL_BATCH_CPU] for i in range(0, len(ws), FILL_BATCH_CPU)]
            with cf.ProcessPoolExecutor(k, mp_context=mp.get_context("fork"), initializer=torch.set_num_threads,
                                        initargs=(1,)) as ex:
                for img in ex.map(_features_job, jobs, chunksize=2):
                    assert img.shape[1:] == (1, 112, 112)
        return run

    in_order = list(range(n))
    by_length = sorted(in_order, key=lambda i: len(pairs[i][0]))  # as datasets.seed_images does
    t_ref = timed(reference, 2)  # best of two: the first also pays librosa's one-off JIT compilation
    variants = [(f"torch, {FILL_BATCH_CPU} clips per call, sorted by length (the cache fill)", FILL_BATCH_CPU,
                 by_length),
                ("torch, 128 clips per call, sorted by length", 128, by_length),
                ("torch, 128 clips per call, file order", 128, in_order)]
    times = [timed(batched(b, o), 2) for _, b, o in variants]
    k = os.cpu_count() or 1
    if k > 1:
        variants.append((f"torch, {FILL_BATCH_CPU} clips per call, sorted, {k} processes × 1 thread", None, None))
        times.append(timed(workers(k), 2))
    r = {"pairs": n, "threads": torch.get_num_threads(), "reference_ms_per_pair": 1000 * t_ref / n,
         "torch_ms_per_pair": 1000 * times[0] / n, "speedup": t_ref / times[0],
         "variants": {name: {"ms_per_pair": 1000 * t / n, "speedup": t_ref / t}
                      for (name, _, _), t in zip(variants, times)}}
    rows = [("librosa + OpenCV, one clip per call", f"{r['reference_ms_per_pair']:.2f} ms", "1.0×")]
    rows += [(name, f"{v['ms_per_pair']:.2f} ms", f"{v['speedup']:.1f}×") for name, v in r["variants"].items()]
    table(f"1. seed feature prep per clean/noisy pair ({n} FSDD pairs, torch threads: {r['threads']})", rows,
          ("path", "per pair", "speed"))
    return r


def _features_job(ws: list[np.ndarray]) -> np.ndarray:
    from digit_denoise.seed.features import SeedFeatureConfig, SeedFeatures, pad_batch

    global _FE
    if "_FE" not in globals():
        _FE = SeedFeatures(SeedFeatureConfig())
    x, lengths = pad_batch(ws)
    with torch.no_grad():
        return _FE(x, lengths)[0].numpy()


def bench_training(steps: int, batch: int) -> dict:
    import cv2
    import librosa

    from digit_denoise.models import build_model, flops_per_sample
    from digit_denoise.seed.features import SeedFeatureConfig, SeedFeatures

    waves = clips(batch)
    rng = np.random.default_rng(2)
    model = build_model("seed")
    opt = torch.optim.Adam(model.parameters(), 2e-4)
    flops = 3 * flops_per_sample(model)  # forward + backward ≈ 3× forward

    def image(y):
        S = librosa.feature.melspectrogram(y=y, sr=48000, n_fft=2048, hop_length=512, n_mels=256)
        db = librosa.power_to_db(S, ref=np.max, top_db=80)
        img = (db - db.min()) / (db.max() - db.min() + 1e-12)
        return cv2.resize(img.astype(np.float32), (112, 112), interpolation=cv2.INTER_AREA)

    def step(noisy, clean):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(noisy), clean).backward()
        opt.step()

    def naive():
        for _ in range(steps):
            cl = np.stack([image(w) for w in waves])
            no = np.stack([image(w + 0.05 * rng.standard_normal(len(w)).astype(np.float32)) for w in waves])
            step(torch.from_numpy(no)[:, None], torch.from_numpy(cl)[:, None])

    fe = SeedFeatures(SeedFeatureConfig())
    lengths = torch.tensor([len(w) for w in waves])
    x = torch.zeros(len(waves), int(lengths.max()))
    for k, w in enumerate(waves):
        x[k, :len(w)] = torch.from_numpy(w)
    with torch.no_grad():
        clean = fe(x, lengths)[0]
        noisy = fe(x + 0.05 * torch.randn_like(x), lengths)[0]

    def cached():
        for _ in range(steps):
            step(noisy, clean)

    step(noisy, clean)  # warm-up
    t_naive, t_new = timed(naive), timed(cached)
    n = steps * batch
    r = {"batch": batch, "steps": steps, "naive_samples_per_s": n / t_naive, "cached_samples_per_s": n / t_new,
         "naive_gflops": n * flops / t_naive / 1e9, "cached_gflops": n * flops / t_new / 1e9,
         "speedup": t_naive / t_new, "flops_per_sample_train": flops, "threads": torch.get_num_threads()}
    table(f"2. seed U-Net training (batch {batch}, {steps} steps, {r['threads']} threads; "
          f"{flops / 1e9:.2f} GFLOP per sample fwd+bwd)", [
        ("naive: librosa + OpenCV per sample every step", f"{r['naive_samples_per_s']:.1f}",
         f"{r['naive_gflops']:.1f}", "1.0×"),
        ("cached batched features", f"{r['cached_samples_per_s']:.1f}", f"{r['cached_gflops']:.1f}",
         f"{r['speedup']:.1f}×")], ("path", "samples/s", "GFLOP/s", "speed"))
    return r


RUNTIME_SNIPPET = r"""
import json, sys, time, torch
cfg = json.loads(sys.argv[1])
if cfg["malloc"]:
    from digit_denoise.runtime import tune_malloc
    assert tune_malloc()
torch.manual_seed(0)
from digit_denoise.models import build_model, flops_per_sample
from digit_denoise.training.distributed import compile_model
from digit_denoise.models import wave_flops_per_second as flops_per_second
if cfg["model"] == "fast":
    from digit_denoise.training.config import PRESETS
    model = build_model("masknet", PRESETS["fast"]["model_config"])
    x, y = torch.randn(cfg["batch"], 16000), torch.randn(cfg["batch"], 16000)
    flops = 3 * flops_per_second(model)  # one 1-s sample, forward + backward
else:
    model = build_model("seed")
    x, y = torch.rand(cfg["batch"], 1, 112, 112), torch.rand(cfg["batch"], 1, 112, 112)
    flops = 3 * flops_per_sample(model)
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
net = compile_model(model) if cfg["compile"] else model
opt = torch.optim.Adam(model.parameters(), 1e-4)
def step():
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"]):
        out = net(x)
    torch.nn.functional.mse_loss(out.float(), y).backward()
    opt.step()
t = time.perf_counter()
for _ in range(cfg["warmup"]):
    step()
warm = time.perf_counter() - t
t = time.perf_counter()
for _ in range(cfg["steps"]):
    step()
dt = time.perf_counter() - t
n = cfg["steps"] * cfg["batch"]
print(json.dumps({"samples_per_s": n / dt, "gflops": n * flops / dt / 1e9, "warmup_s": warm}))
"""


def bench_runtime(steps: int) -> dict:
    """Training throughput under CPU runtime settings, each variant in its own process (same threads)."""
    base = dict(malloc=True, compile=False, bf16=False, channels_last=False, warmup=2, steps=steps)
    fast, seed = dict(model="fast", batch=32), dict(model="seed", batch=8)
    variants = [
        ("fast MaskNet, glibc malloc defaults", {**fast, "malloc": False}),
        ("fast MaskNet, malloc tuned (the CLI's default)", fast),
        ("fast MaskNet, malloc tuned + torch.compile", {**fast, "compile": True, "warmup": 3}),
        ("fast MaskNet, malloc tuned + bf16 autocast", {**fast, "bf16": True}),
        ("seed U-Net, glibc malloc defaults", {**seed, "malloc": False}),
        ("seed U-Net, malloc tuned", seed),
        ("seed U-Net, malloc tuned + channels_last", {**seed, "channels_last": True}),
    ]
    out, rows, ref = {}, [], {}
    env = {**os.environ, "DIGIT_DENOISE_MALLOC": "default"}  # the snippet tunes malloc itself when asked
    for name, v in variants:
        cfg = {**base, **v}
        p = subprocess.run([sys.executable, "-c", RUNTIME_SNIPPET, json.dumps(cfg)], capture_output=True, text=True,
                           env={**env, "DIGIT_DENOISE_MALLOC": ""} if cfg["malloc"] else env, timeout=900)
        if p.returncode != 0:
            rows.append((name, "failed: " + (p.stderr.strip().splitlines() or ["?"])[-1][:60], "", "", ""))
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        ref.setdefault(cfg["model"], r["samples_per_s"])
        r["vs_first"] = r["samples_per_s"] / ref[cfg["model"]]
        out[name] = r
        rows.append((name, f"{r['samples_per_s']:.1f}", f"{r['gflops']:.1f}", f"{r['vs_first']:.2f}×",
                     f"{r['warmup_s']:.1f} s"))
    table(f"2b. CPU runtime settings: training samples/s ({torch.get_num_threads()} threads; fast: batch 32 × 1 s, "
          "seed: batch 8)", rows, ("variant", "samples/s", "GFLOP/s", "speed", "warm-up"))
    return out


def bench_inference(seconds: float) -> dict:
    from digit_denoise.compare import peers
    from digit_denoise.enhance import Denoiser

    sr = 16000
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal(int(sr * seconds))).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows, out = [], {}
    try:
        methods = []
        default = REPO / "src" / "digit_denoise" / "pretrained" / "default.safetensors"
        if default.is_file():
            methods.append(("ours: fast (shipped default)", Denoiser.from_checkpoint(default).enhance))
        from digit_denoise.checkpoint import model_meta
        from digit_denoise.models import build_model

        seed = build_model("seed").eval()
        methods.append(("ours: seed U-Net (noisy phase)",
                        Denoiser(seed, model_meta("seed", seed.config.to_dict(), {"kind": "seed"}, 48000)).enhance))
        avail = peers.available_methods()
        for name in ("noisereduce-stationary", "noisereduce-nonstationary", "wiener", "rnnoise", "deepfilternet3"):
            if avail.get(name) is None:
                m = peers.get_method(name)
                methods.append((name, lambda a, s, m=m: m.enhance(a, s)))
        for name, fn in methods:
            fn(x[: sr], sr)
            t = time.process_time()
            fn(x, sr)
            out[name] = (time.process_time() - t) / seconds
        base = out.get("noisereduce-stationary")
        for name, rtf in out.items():
            rows.append((name, f"{rtf:.4f}", f"{rtf / base:.2f}×" if base else "—"))
    finally:
        torch.set_num_threads(threads)
    table(f"3. inference real-time factor, one thread, {seconds:.0f} s of audio (lower is faster)", rows,
          ("method", "RTF", "vs noisereduce"))
    return out


def bench_memory(minutes: float) -> dict:
    import soundfile as sf

    default = REPO / "src" / "digit_denoise" / "pretrained" / "default.safetensors"
    if not default.is_file():
        print("\n4. long-file memory: skipped (no shipped default model)")
        return {}
    res = {}
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "long.wav"
        sr = 16000
        with sf.SoundFile(src, "w", sr, 1, "PCM_16") as f:
            rng = np.random.default_rng(4)
            for _ in range(int(minutes * 60 / 10)):
                f.write((0.05 * rng.standard_normal(sr * 10)).astype(np.float32))
        code = ("import sys; from digit_denoise.cli import main; rc=main(sys.argv[1:]); "
                "print('RSS', next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]); "
                "sys.exit(rc)")  # VmHWM: this process's peak; ru_maxrss would include the forking parent's
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", code, "denoise", str(src), "-o", str(Path(d) / "out.wav"),
                            "--threads", "1"], capture_output=True, text=True,
                           env={**os.environ, "DIGIT_DENOISE_QUIET": "1"})
        wall = time.perf_counter() - t
        rss = [int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("RSS")]
        if p.returncode != 0 or not rss:
            print("\n4. long-file memory: failed:", p.stderr.strip()[-300:])
            return {}
        res = {"minutes": minutes, "peak_rss_mib": rss[0] / 1024, "input_mib": src.stat().st_size / 2 ** 20,
               "wall_s": wall}
    table("4. denoise a long file (streamed), shipped default model", [
        (f"{minutes:.0f} min 16 kHz WAV ({res['input_mib']:.0f} MiB)", f"{res['peak_rss_mib']:.0f} MiB",
         f"{res['wall_s']:.1f} s")], ("input", "peak RSS", "wall"))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a minute or two)")
    a = ap.parse_args(argv)
    os.environ.setdefault("DIGIT_DENOISE_QUIET", "1")
    from digit_denoise.runtime import tune_malloc

    tune_malloc()  # as the CLI does: both sides of each in-process comparison run with it
    q = a.quick
    print(f"digit-denoise benchmarks on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    results = {"features": bench_features(64 if q else 256),
               "training": bench_training(2 if q else 4, 16 if q else 32),
               "runtime": bench_runtime(2 if q else 4),
               "inference": bench_inference(10.0 if q else 30.0),
               "memory": bench_memory(5.0 if q else 60.0)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {RESULTS / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
