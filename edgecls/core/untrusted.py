"""Reading what a stranger's bundle holds: JSON with its size and depth bounded before it is parsed,
text made safe to print. A bundle is copied between machines and downloaded from colleagues; what it
says is data, never markup, a terminal escape or a reason to allocate without limit.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

from .errors import EdgeclsError

MAX_JSON_BYTES = 16 << 20  # a manifest is kilobytes; its largest legitimate parts (ids, rows) stay far below
MAX_JSON_DEPTH = 32  # the manifest nests 6 deep


def depth(value, limit: int) -> int:
    """How deep `value` (parsed JSON) nests, counted without recursion; stops at `limit` + 1."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def load_json(path: Path, what: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """Parse a JSON file of a bundle after checking its size, and refuse nesting deeper than `max_depth`.

    Raises:
        EdgeclsError: naming `path` and `what` it should be (missing, too large, not JSON, too deep).
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise EdgeclsError(f"{path}: {size:,} bytes is over the limit of {max_bytes:,} for a {what}: refused")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise EdgeclsError(f"{path}: over the limit of {max_bytes:,} bytes for a {what}: refused")
        value = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgeclsError(f"{path}: corrupt {what} ({e})") from e
    except RecursionError as e:
        raise EdgeclsError(f"{path}: corrupt {what} (nested too deeply)") from e
    if depth(value, max_depth) > max_depth:
        raise EdgeclsError(f"{path}: corrupt {what} (nested deeper than {max_depth} levels)")
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """`text` with control characters (ANSI escapes, carriage returns, bidi overrides) removed: a string
    from a bundle printed to a terminal shows what it says and nothing else. Newlines and tabs stay."""
    s = str(text)
    s = _CONTROL.sub("", s)
    return "".join(c for c in s if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf"))


def markup_safe(text: object) -> str:
    """`printable(text)` escaped for rich console markup: "[green]ok[/]" prints as written, not in green."""
    from rich.markup import escape

    return escape(printable(text))
