"""Error types a user can cause; the CLI prints them as one line (exit 2), never a traceback."""


class UserError(Exception):
    """Bad input, bad configuration, or an unreachable dependency the user must fix."""
