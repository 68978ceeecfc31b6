"""User-facing errors.

Anything the user can fix (a bad path, value, name or file) raises `UserError`; the CLI
prints its message on one line and exits with code 2. Everything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, corrupt or asks for something not allowed."""
