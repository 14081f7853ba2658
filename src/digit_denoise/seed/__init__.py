"""The seed project's representation, reproduced: 48 kHz mel images (:mod:`.features`), their way back to
audio (:mod:`.inversion`, Griffin-Lim or the noisy phase), the on-disk image cache of a manifest's clips
(:mod:`.cache`) and clip-by-clip inference (:mod:`.infer`). The models themselves (``seed``,
``seed-buggy``, ``seed-attn``) are in :mod:`..models`."""
