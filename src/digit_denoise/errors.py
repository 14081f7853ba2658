"""The one exception type for user mistakes.

Raise :class:`UserError` deep in the code with a one-line message saying what was
wrong, which file, and what to do. The CLI prints it once (no traceback) and exits 2.
Anything else is a bug and may show a traceback.
"""


class UserError(Exception):
    """A mistake the user can fix (bad path, bad option, unreadable file...)."""

    exit_code = 2
