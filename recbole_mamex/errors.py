"""The base of every error this package reports to a user (bad input, a run that cannot go as asked).

Every command line prints one as a single ``error: ...`` line and exits with status 2; any other
exception is a bug and keeps its traceback. Each error class also derives from the built-in error it
refines (``ValueError``, ``FileNotFoundError``, ...), so code that catches those keeps working.
"""


class RecboleMamexError(Exception):
    """A user-facing error: its message says what was expected and what was found."""


class ConfigError(RecboleMamexError, ValueError):
    """A config key or value that cannot be used (a key no layer defines, a value out of its range, an
    option a model does not have)."""


def report_user_errors(task) -> int:
    """``task()`` (returning an exit status); a :class:`RecboleMamexError` becomes one ``error: ...`` line on
    stderr and exit status 2. Every command line of the package runs through this."""
    import sys

    try:
        return task()
    except RecboleMamexError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
