"""digit-denoise: train, evaluate and serve denoisers for short spoken recordings."""

from .errors import UserError
from .version import __version__

__all__ = ["UserError", "__version__", "Denoiser"]


def __getattr__(name):  # lazy: importing the package must stay cheap
    if name == "Denoiser":
        from .enhance import Denoiser

        return Denoiser
    raise AttributeError(name)
