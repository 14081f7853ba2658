"""``python -m digit_denoise ...`` = the ``digit-denoise`` command; also ``torchrun -m digit_denoise train ...``."""

import sys

from .cli import main

sys.exit(main())
