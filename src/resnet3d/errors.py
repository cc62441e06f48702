"""The one exception type that reaches the user as a message instead of a traceback."""


class UserError(Exception):
    """Bad input or a bad request: the message names the file, the key and the fix.

    The CLI prints it as one line and exits with status 2. Raise it for anything the user can
    correct; let genuine bugs raise ordinary exceptions so they keep their traceback.
    """
