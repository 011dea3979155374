"""Errors the user can fix. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: unknown name, missing file, malformed data, hash mismatch, ...

    The message must fit on one line and say what to do.
    """
