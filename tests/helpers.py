"""Shared fixtures-in-code for the train / evaluate / enhance / CLI tests: a tiny synthetic corpus.

3 speakers × 10 digits × 2 takes of 0.3 s harmonic tones (speaker-specific pitch, digit-specific
formant-ish harmonics) at 8 kHz in FSDD layout ``recordings/D_name_I.wav``.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 8000
TINY_MODEL = {"channels": [4, 8, 16]}  # a small U-Net: fast on 1 CPU thread
SPEAKERS = {"alice": 180.0, "bob": 110.0, "carol": 240.0}


def tone(f0: float, digit: int, take: int, sr: int = SR, dur: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * dur)) / sr
    x = np.zeros_like(t)
    for h in range(1, 6):
        f = f0 * h * (1 + 0.01 * take)
        if f >= sr / 2:
            break
        x += np.sin(2 * np.pi * f * t + digit) / h * (1 + 0.3 * np.cos(digit * h))
    env = np.sin(np.pi * t / dur) ** 2
    return (0.3 * x * env / np.max(np.abs(x) + 1e-9)).astype(np.float32)


def make_corpus(root: Path, takes: int = 2) -> Path:
    rec = root / "recordings"
    rec.mkdir(parents=True, exist_ok=True)
    for name, f0 in SPEAKERS.items():
        for d in range(10):
            for i in range(takes):
                sf.write(str(rec / f"{d}_{name}_{i}.wav"), tone(f0, d, i), SR, subtype="PCM_16")
    return root


def make_manifest(root: Path, *, test_speakers="1", val_fraction: float = 0.5, snr: str = "0") -> Path:
    """Corpus + manifest (1 test speaker; train/val split of the other two). Returns the manifest path."""
    from digit_denoise.data.manifest import prepare
    from digit_denoise.data.noise import NoiseConfig

    corpus = make_corpus(root / "corpus")
    out = root / "manifest.csv"
    prepare(corpus, out, layout="fsdd", test_speakers=test_speakers, val_fraction=val_fraction, seed=0,
            noise=NoiseConfig.parse("white", snr))
    return out


def train_cfg(manifest: Path, out: Path, **kw):
    from digit_denoise.training.config import resolve_config

    base = dict(manifest=str(manifest), out=str(out), batch_size=8, max_steps=16, val_every=4, lr=1e-2,
                threads=1, device="cpu", seed=0, model_config=dict(TINY_MODEL))
    base.update(kw)
    preset = base.pop("preset", "seed")
    return resolve_config(preset, **base)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = "Chromium and chromedriver not installed (apt-get install chromium chromium-driver)"


@contextlib.contextmanager
def headless_chromium(tmp_path: Path, height: int = 1400):
    """A Selenium driver of Debian's headless Chromium (the probe's flags; a fresh profile in ``tmp_path``)."""
    import pytest

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (test extra)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", f"--window-size=1100,{height}",
                 "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
