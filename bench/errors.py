"""Errors the CLI turns into one clear message instead of a traceback.

UsageError -> exit code 2 (the user asked for something that cannot be done as written).
BenchError -> exit code 1 (the environment or data is not what it must be).
"""


class BenchError(Exception):
    """A failure with a message meant for the user (exit code 1)."""

    exit_code = 1


class UsageError(BenchError):
    """Bad command-line input or configuration (exit code 2)."""

    exit_code = 2
