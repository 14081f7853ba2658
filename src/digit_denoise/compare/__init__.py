"""``digit-denoise compare``: every denoiser on identical noisy inputs, over a noise × SNR grid.

For each condition (noise kind × SNR, fixed by ``seed``) and each clip the noisy input is made
**once** at the 16 kHz metric rate (:func:`manifest.with_noise` + :func:`data.make_pair`), and every
method enhances that same array. Methods are peers (:data:`peers.PEERS`, ``seed-ceiling``
included) or our trained runs (a path → :class:`enhance.Denoiser`). Per clip: SI-SDR / PESQ / STOI
and their improvements over the noisy input (:func:`metrics.compute_metrics`, parallel workers),
plus the MSE between the clean and the estimate's seed images (:func:`metrics.spectrogram_mse`).
Per method: the real-time factor (CPU seconds / audio seconds, one torch thread).

Output folder: ``per_clip.csv``, ``summary.json`` and ``report.html`` (+ ``figures/``, ``audio/``).

Modules: :mod:`.core` (the run: methods, conditions, per-clip rows, summary), :mod:`.peers` (the
other denoisers), :mod:`.stats` (means and CIs on the common support), :mod:`.report` (HTML),
:mod:`.results` (the markdown results page). This package's own namespace holds only the defaults
the CLI shows (no torch); everything else loads on first use.
"""

from __future__ import annotations

from .defaults import DEFAULT_METHODS, DEFAULT_NOISE, DEFAULT_SNR  # noqa: F401  (light: no torch)

__all__ = ["DEFAULT_METHODS", "DEFAULT_NOISE", "DEFAULT_SNR"]  # and, on first use, everything of .core
SUBMODULES = ("core", "defaults", "peers", "report", "results", "stats")


def __getattr__(name: str):  # compare(), resolve_methods(), ... from .core, loaded on first use
    import importlib

    if name.startswith("__") or name in SUBMODULES:
        raise AttributeError(name)  # the import system then loads the submodule itself
    core = importlib.import_module(f"{__name__}.core")
    try:
        return getattr(core, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
