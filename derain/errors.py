"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class DerainError(Exception):
    """A user-facing problem: bad input, missing file, wrong config. The message is one line."""
