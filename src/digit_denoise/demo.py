"""``make demo``: the whole job end to end on an embedded synthetic corpus, in a few minutes on CPU.

synth (espeak-ng pseudo-speakers) → manifest (speaker-disjoint split, white/pink/babble noise at
-8 dB) → a few noisy clips on disk → train the seed U-Net for a short budget → evaluate (MSE beside
the baselines, figures) → denoised WAVs. Rerunning reuses what is already there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .compare.core import compare
from .data.manifest import load_manifest, prepare, select, summary_table
from .data.noise import NoiseConfig
from .data.pairs import mix_to_disk
from .data.synth import synthesize_corpus
from .denoise import denoise_paths
from .errors import UserError
from .evaluate import evaluate
from .pretrained import packaged_path
from .runtime import tune_malloc
from .training.config import resolve_config
from .training.loop import train


def run_demo(out: str | Path, speakers: int = 12, takes: int = 4, steps: int = 40, seed: int = 0) -> dict:
    out = Path(out)
    t0 = time.perf_counter()
    corpus = out / "corpus"
    print(f"[1/6] synthetic corpus: {speakers} speakers × 10 digits × {takes} takes → {corpus}", flush=True)
    if not (corpus / "audioMNIST_meta.txt").is_file():
        synthesize_corpus(corpus, speakers=speakers, takes=takes, seed=seed)
    manifest = out / "manifest.csv"
    print("[2/6] manifest: 3 test speakers held out, noise white/pink/babble at -8 dB", flush=True)
    rows = prepare(corpus, manifest, layout="audiomnist", test_speakers="3", val_fraction=0.2, seed=seed,
                   noise=NoiseConfig.parse("white,pink,babble", "-8"), overwrite=True)
    print(summary_table(rows), flush=True)
    noisy_dir = out / "noisy-test"
    if not (noisy_dir / "manifest.csv").exists():
        mix_to_disk(select(rows, "test", 6), noisy_dir, all_rows=rows)
    print(f"[3/6] training the seed U-Net for {steps} steps (batch 32)", flush=True)
    run = out / "runs" / "seed"
    cfg = resolve_config("seed", manifest=str(manifest), out=str(run), max_steps=steps, batch_size=32,
                         val_every=10, seed=seed)
    s = train(cfg)
    print("[4/6] evaluating on the test speakers", flush=True)
    ev = evaluate(run, "test", n_examples=3)
    print("[5/6] denoising the noisy test clips written to disk", flush=True)

    noisy_files = [r.noisy_path for r in load_manifest(noisy_dir / "manifest.csv")]
    denoise_paths(noisy_files, str(out / "denoised"), model=str(run), overwrite=True)

    default = packaged_path("default")
    print("[6/6] the shipped default model: denoise the same clips, then compare everything on 12 test clips "
          "(white and babble noise at -8 dB, SI-SDR / PESQ / STOI)", flush=True)
    denoise_paths(noisy_files, str(out / "denoised-default"), model=str(default), overwrite=True)

    cmp = compare(manifest, out / "compare", split="test", methods=["noisy", "wiener", "oracle-irm", str(run),
                  str(default)], noise="white,babble", snr="-8", seed=seed, limit=12, overwrite=True, examples=2)
    minutes = (time.perf_counter() - t0) / 60
    print()
    print(f"Test MSE on the 112×112 seed representation ({ev['n_clips']} clips of unseen speakers):")
    print(ev["table"])
    print()
    print(f"corpus:       {corpus}")
    print(f"manifest:     {manifest}")
    print(f"noisy clips:  {noisy_dir}")
    print(f"run:          {run}  (loss.png, history.csv, checkpoints/)")
    print(f"evaluation:   {ev['folder']}  (summary.json, per_clip.csv, mse_per_*.png, figures/, audio/)")
    print(f"denoised:     {out / 'denoised'} (seed run), {out / 'denoised-default'} (shipped default)")
    print()
    print("Speech metrics on the same test clips (the seed run trained for only a few steps):")
    print(cmp["table"])
    print(f"comparison:   {out / 'compare' / 'report.html'}")
    print(f"done in {minutes:.1f} min; training {s['elapsed_s']:.0f} s at {s['samples_per_s']} samples/s")
    return {"train": s, "evaluate": ev}


def main(argv: list[str] | None = None) -> int:
    tune_malloc()  # as the CLI does (faster CPU torch)
    p = argparse.ArgumentParser(prog="python -m digit_denoise.demo", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="demo", help="folder for everything the demo makes")
    p.add_argument("--speakers", type=int, default=12, help="synthetic speakers")
    p.add_argument("--takes", type=int, default=4, help="takes per digit and speaker")
    p.add_argument("--steps", type=int, default=40, help="training steps")
    p.add_argument("--seed", type=int, default=0, help="seed of everything")
    a = p.parse_args(argv)
    try:
        run_demo(a.out, a.speakers, a.takes, a.steps, a.seed)
    except UserError as e:
        print(f"digit-denoise demo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
