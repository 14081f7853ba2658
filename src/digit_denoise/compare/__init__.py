"""``digit-denoise compare``: every denoiser on identical noisy inputs, over a noise × SNR grid.

For each condition (noise kind × SNR, fixed by ``seed``) and each clip the noisy input is made
**once** at the 16 kHz metric rate (:func:`manifest.with_noise` + :func:`data.make_pair`), and every
method enhances that same array. Methods are peers (:data:`peers.PEERS`, ``seed-ceiling``
included) or our trained runs (a path → :class:`enhance.Denoiser`). Per clip: SI-SDR / PESQ / STOI
and their improvements over the noisy input (:func:`metrics.compute_metrics`, parallel workers),
plus the MSE between the clean and the estimate's seed images (:func:`metrics.spectrogram_mse`).
Per method: the real-time factor (CPU seconds / audio seconds, one torch thread).

Output folder: ``per_clip.csv``, ``summary.json`` and ``report.html`` (+ ``figures/``, ``audio/``).

Modules: :mod:`.core` (the run: ``compare()``, methods, conditions, per-clip rows, summary),
:mod:`.methods` (what ``--methods`` names), :mod:`.peers` (the other denoisers), :mod:`.stats` (means
and CIs on the common support), :mod:`.report` (HTML), :mod:`.runinfo` (what a run folder says of
itself), :mod:`.defaults` (the CLI's defaults, no torch). Import what you use from its module:
``from digit_denoise.compare.core import compare``.
"""
