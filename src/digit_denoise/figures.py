"""Pictures a person would rather look at than read: waveforms and spectrograms side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .audio import atomic_path


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.4, 4.8), dpi: int = 100,
             **kwargs) -> tuple[Figure, object]:
    """``(figure, axes)`` like ``pyplot.subplots``, but a plain :class:`Figure`: no pyplot state, no GUI
    backend chosen for the caller's process, nothing to close (saving renders with Agg)."""
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _spec_db(x: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    n_fft = 512 if sr <= 16000 else 2048
    hop = n_fft // 4
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = 1 + (x.size - n_fft) // hop
    win = np.hanning(n_fft).astype(np.float32)
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * win, axis=1)) ** 2
    return 10 * np.log10(spec.T + 1e-10), hop / sr


def pair_figure(signals: dict[str, np.ndarray], sr: int, path: str | Path, title: str = "") -> Path:
    """One column per signal (e.g. clean / noisy / denoised): waveform on top, spectrogram below."""
    n = len(signals)
    fig, axes = subplots(2, n, figsize=(3.4 * n, 4.6), dpi=100, squeeze=False)
    peak = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in signals.values()) or 1.0
    ref = max((_spec_db(x, sr)[0].max() for x in signals.values() if x.size), default=0.0)
    for i, (name, x) in enumerate(signals.items()):
        t = np.arange(x.size) / sr
        axes[0, i].plot(t, x, lw=0.5)
        axes[0, i].set_ylim(-peak * 1.05, peak * 1.05)
        axes[0, i].set_title(name)
        axes[0, i].set_xlabel("s")
        spec, dt = _spec_db(x, sr)
        axes[1, i].imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=ref - 80, vmax=ref,
                          extent=(0, spec.shape[1] * dt, 0, sr / 2000))
        axes[1, i].set_xlabel("s")
        axes[1, i].set_ylabel("kHz")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
