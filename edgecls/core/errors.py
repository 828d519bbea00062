"""The project's error types, named for what failed. The CLI maps each to an exit code (its class's
`exit_code`: 2 bad input, 1 a check that ran and failed, 3 the work failed at run time); none of them
prints a traceback.

    EdgeclsError                 exit 2  base: the message is one line and names the file
    ├── BadInput                 exit 2  a user mistake or bad input (an option, a file, an image)
    ├── MissingDependency        exit 2  an optional package is not installed (names the extra)
    │   └── RuntimeMissing       exit 2  a runtime's package is not installed
    ├── CheckFailed              exit 1  a check ran and failed
    │   ├── SelfCheckFailed      exit 1  a written file failed its self-check (export: shape, NaN, not quantized)
    │   ├── ConversionFailed     exit 1  a converter wrote something other than what was asked
    │   ├── ParityFailed         exit 1  outputs differ from the reference beyond the gate (the web app's self-test)
    │   └── IntegrityFailed      exit 1  a recorded file does not match its sha256
    └── RunFailed                exit 3  the work itself failed at run time (out of memory, a worker lost)
"""


class EdgeclsError(Exception):
    """A user mistake or bad input (exit code 2). The message is one line and names the file."""

    exit_code = 2


class BadInput(EdgeclsError):
    """An option, a file or an image that cannot be used as given (exit code 2)."""


class CheckFailed(EdgeclsError):
    """A check ran and failed (exit code 1); the subclasses say which."""

    exit_code = 1


class SelfCheckFailed(CheckFailed):
    """A file just written failed its self-check: wrong output shape, NaN, not probabilities, or an int8 file with
    no quantized operation."""


class ConversionFailed(CheckFailed):
    """A converter produced something other than what was asked (e.g. an int8 input that is not raw pixels)."""


class ParityFailed(CheckFailed):
    """Outputs differ from the reference's beyond the gate (the web app's self-test on the golden vectors)."""


class IntegrityFailed(CheckFailed):
    """A file the manifest records does not match its recorded size or sha256."""


class RunFailed(EdgeclsError):
    """The work itself failed at run time, not the usage: out of memory, a worker of a multi-worker run
    lost or never up (exit code 3). Nothing was written."""

    exit_code = 3


class MissingDependency(EdgeclsError):
    """An optional package is not installed; the message names the extra to install."""


class RuntimeMissing(MissingDependency):
    """A runtime's package is not installed; the message names the extra to install."""


def require(module: str, extra: str, error: type[MissingDependency] = MissingDependency):
    """Import an optional module, or raise `error` naming `pip install edgecls[extra]`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise error(f"the Python package for '{module}' is not installed: pip install 'edgecls[{extra}]'") from e
