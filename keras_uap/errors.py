"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's input or environment (bad value, missing file)."""


class DataError(UserError):
    """Missing, truncated or corrupt data files, or no way to obtain the data."""
