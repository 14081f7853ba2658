"""digit-denoise: train, evaluate and serve denoisers for short spoken recordings."""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402

__all__ = ["UserError", "__version__", "Denoiser"]


def __getattr__(name):  # lazy: importing the package must stay cheap
    if name == "Denoiser":
        from .enhance import Denoiser

        return Denoiser
    raise AttributeError(name)
