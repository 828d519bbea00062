"""ONNX external data: weights an .onnx file names in another file, which onnxruntime would read from
beside it. A bundle hashes what it records; an unrecorded file of weights would change the answers of
an artifact whose own bytes still match. edgecls's exports keep every weight inside the .onnx file,
so an ONNX artifact that names external data is refused, and the ONNX runtime loads the checked bytes
themselves (never a path from which it could resolve more).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import EdgeclsError


def external_locations(path: Path) -> list[str]:
    """The files `path`'s tensors (initializers, attributes, subgraphs) keep their data in; [] without the
    `onnx` package (then the runtime's load from bytes refuses them)."""
    if importlib.util.find_spec("onnx") is None:
        return []
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
        return sorted({ExternalDataInfo(t).location for t in _get_all_tensors(model) if uses_external_data(t)})
    except Exception as e:  # a damaged protobuf raises whatever its parser hits
        raise EdgeclsError(f"{path}: not a readable ONNX file ({type(e).__name__}: {str(e)[:200]})") from e


def check_external(path: Path, entry: dict) -> None:
    """Refuse an ONNX artifact whose weights live in other files (ONNX external data).

    Raises:
        EdgeclsError: naming the artifact and the first external file.
    """
    where = external_locations(path)
    if where:
        raise EdgeclsError(f"{path}: keeps tensor data in another file ({where[0]!r}, ONNX external data), which "
                           f"the manifest does not hash as {entry['file']}: refused (edgecls's ONNX exports keep "
                           "every weight inside the .onnx file)")
