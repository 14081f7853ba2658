"""Training throughput of one recipe on this machine's cores, side by side in one run: one process with one
thread, one process with two threads, and two torchrun ranks with one thread each (the global batch and the
results stay those of one process; see README "Train a model").

    python -m bench.parallel recipes/ablation/base.toml --steps 60

Each variant trains ``--steps`` steps from scratch in its own temporary run folder (the recipe's data, model
and batch; ``--max-steps`` and ``--threads`` set here) and reports the samples/s of its training loop (data
loading before it excluded); ratios are against one thread. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {  # name: (command prefix, threads per process)
    "1 process × 1 thread": ([sys.executable, "-m", "digit_denoise"], 1),
    "1 process × 2 threads": ([sys.executable, "-m", "digit_denoise"], 2),
    "2 torchrun ranks × 1 thread": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                     "--nproc-per-node", "2", "-m", "digit_denoise"], 1),
}


def run(prefix: list[str], threads: int, recipe: str, steps: int, out: Path) -> float:
    env = {**os.environ, "DIGIT_DENOISE_QUIET": "1", "OMP_NUM_THREADS": str(threads)}
    cmd = [*prefix, "train", "--config", recipe, "--max-steps", str(steps), "--val-every", str(steps),
           "--threads", str(threads), "--out", str(out), "--max-minutes", "0"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return float(json.loads((out / "summary.json").read_text())["samples_per_s"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.parallel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="a recipe file (its model, data and batch are trained)")
    ap.add_argument("--steps", type=int, default=60, help="training steps per variant")
    a = ap.parse_args(argv)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (prefix, threads)) in enumerate(VARIANTS.items()):
            rates[name] = run(prefix, threads, a.recipe, a.steps, Path(tmp) / f"v{i}")
            print(f"{name}: {rates[name]:.1f} samples/s", flush=True)
    base = rates["1 process × 1 thread"]
    print(f"\n{a.recipe}, {a.steps} steps each")
    for name, r in rates.items():
        print(f"  {name:<28} {r:7.1f} samples/s   {r / base:4.2f}×")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "parallel.json").write_text(json.dumps({"recipe": a.recipe, "steps": a.steps, "samples_per_s": rates},
                                                  indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
