"""User-facing errors: one line, no traceback, exit status 2 (see harness.__main__)."""


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, unknown name).

    The message must fit on one line and name both the problem and the fix.
    """
