"""The project's error types. The CLI maps each to an exit code; none of them prints a traceback."""


class EdgeclsError(Exception):
    """A user mistake or bad input (exit code 2). The message is one line and names the file."""

    exit_code = 2


class CheckFailed(EdgeclsError):
    """A check ran and failed: a parity gate, an export self-test (exit code 1)."""

    exit_code = 1


class RunFailed(EdgeclsError):
    """The work itself failed at run time, not the usage: out of memory, a worker of a multi-worker run
    lost or never up (exit code 3). Nothing was written."""

    exit_code = 3


class MissingDependency(EdgeclsError):
    """An optional package is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional module, or raise MissingDependency naming `pip install edgecls[extra]`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"the Python package for '{module}' is not installed: pip install 'edgecls[{extra}]'"
        ) from e
