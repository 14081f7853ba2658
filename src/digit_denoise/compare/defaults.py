"""The comparison's defaults, readable without loading torch (the CLI shows them in --help)."""

DEFAULT_METHODS = ("noisy", "noisereduce-stationary", "noisereduce-nonstationary", "wiener", "rnnoise",
                   "deepfilternet3", "oracle-irm", "seed-ceiling")
DEFAULT_NOISE = "white,pink,brown,babble"
DEFAULT_SNR = "-8,-5,0,5"
