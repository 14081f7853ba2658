"""The package version (one place; ``digit_denoise.__version__`` re-exports it)."""

__version__ = "0.1.0"
