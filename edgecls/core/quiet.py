"""Keep native libraries' start-up chatter off the user's terminal, and keep their real warnings.

TensorFlow, oneDNN, absl and LiteRT write info lines straight to file descriptor 2 from C++
("All log messages before absl::InitializeLog() ...", "oneDNN custom operations are on ...",
"Created TensorFlow Lite XNNPACK delegate for CPU."); Python's logging cannot reach them.
`native_output()` sends descriptors 1 and 2 to temporary files for the length of one call,
always puts them back (also on an exception or Ctrl-C), then writes back to stderr every line
that is not known chatter, so warnings and errors still reach the user.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from typing import Iterator

#: lines that are information, never a problem: dropped
CHATTER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|I\d{4} [\d:.]+ +\d+ \S+\] "  # absl/TF INFO lines (W..., E... lines are kept)
    r"|INFO: "  # LiteRT/TFLite info lines ("Created TensorFlow Lite XNNPACK delegate for CPU.")
    r"|.*oneDNN custom operations are on"
    r"|.*This TensorFlow binary is optimized to use available CPU instructions"
    r"|.*To enable the following instructions: .* in other operations, rebuild TensorFlow)")


def keep(line: str) -> bool:
    """Is this line of native output worth showing (not known chatter, not blank)?"""
    return bool(line.strip()) and not CHATTER.match(line)


@contextlib.contextmanager
def native_output(*, drop_stdout: bool = False) -> Iterator[None]:
    """Run the body with fds 1 and 2 captured; replay what is not chatter to stderr afterwards.

    With `drop_stdout`, what the body prints to stdout (converters' progress listings) is
    discarded, so stdout stays clean for results and ``--json``; Python-level writes to
    ``sys.stdout`` are discarded too. Nests safely; not for concurrent threads.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    files = {fd: tempfile.TemporaryFile(mode="w+b") for fd in (1, 2)}
    try:
        for fd, f in files.items():
            os.dup2(f.fileno(), fd)
        redirect = contextlib.redirect_stdout(io.StringIO()) if drop_stdout else contextlib.nullcontext()
        with redirect:
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)
        texts = {}
        for fd, f in files.items():
            f.seek(0)
            texts[fd] = f.read().decode("utf-8", "replace")
            f.close()
        lines = texts[2].splitlines() + ([] if drop_stdout else texts[1].splitlines())
        shown = [line for line in lines if keep(line)]
        if shown:
            sys.stderr.write("\n".join(shown) + "\n")
            sys.stderr.flush()


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Run a converter with fds 1 and 2 (and Python warnings) discarded; both restored even on error.

    Converters (tf2onnx, the TFLite converter, OpenVINO's, NNCF) print SavedModel listings,
    progress bars and C++ logs; their failures surface as exceptions, whose message is what
    edgecls reports, so nothing they print is needed.
    """
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
