"""The base of every error this package reports to a user (bad input, a run that cannot go as asked).

Every command line prints one as a single ``error: ...`` line and exits with status 2; any other
exception is a bug and keeps its traceback. Each error class also derives from the built-in error it
refines (``ValueError``, ``FileNotFoundError``, ...), so code that catches those keeps working.
"""


class RecboleMamexError(Exception):
    """A user-facing error: its message says what was expected and what was found."""


class InputFileError(RecboleMamexError, ValueError):
    """An input file that cannot be used; the message names the file, what was expected and what was
    found (the base of every such error in this package and in ``dataset_prep``)."""

    def __init__(self, path, expected: str, found: str):
        import os

        self.path = os.fspath(path) if path is not None else None
        self.expected = expected
        self.found = found
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}expected {expected}, found {found}")


class ConfigError(RecboleMamexError, ValueError):
    """A config key or value that cannot be used (a key no layer defines, a value out of its range, an
    option a model does not have)."""


class CompareError(RecboleMamexError, ValueError):
    """A comparison that cannot run as asked (found before any training, or a stored record it cannot use)."""


RECBOLE_INSTALL = 'pip install --no-deps "recbole==1.2.1"'


def report_user_errors(task) -> int:
    """``task()`` (returning an exit status); a :class:`RecboleMamexError`, or RecBole missing (with its install
    command), becomes one ``error: ...`` line on stderr and exit status 2, and Ctrl-C one ``interrupted`` line
    and status 130. Every command line of the package runs through this."""
    import sys

    try:
        return task()
    except RecboleMamexError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] != "recbole":
            raise
        print(f"error: RecBole 1.2.1 is not installed. Install it with: {RECBOLE_INSTALL} (on Python 3.12+ pip cannot "
              "resolve RecBole's own ray pin, so this package lists RecBole's other requirements itself; `make venv` "
              "does this step)", file=sys.stderr)
        return 2


def os_error_text(err: OSError) -> str:
    """What went wrong, e.g. ``no space left on device``: the text of its errno (lower case), else its message."""
    import os

    if err.errno is None:
        return str(err)
    text = os.strerror(err.errno)
    return text[:1].lower() + text[1:]
