"""An imported SavedModel inside a bundle: a Keras layer that calls the bundle's own ``savedmodel/`` folder.

`edgecls import` of a SavedModel folder copies it into the bundle (every file recorded with its sha256 as a
part of the ``model.keras`` artifact) and writes a ``model.keras`` whose one graph layer is this class. Keras
3 cannot load a SavedModel as a Keras model, and its own ``TFSMLayer`` is refused in safe mode because it
loads a folder from anywhere; this layer loads only the folder beside the ``.keras`` file being loaded
(`base`), after the bundle checked its hashes, and only a graph whose serving function reads and writes no
files and calls no Python (`DENIED_OPS`). Everything else (export, verify, bench) sees a Keras model.
"""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path
from typing import Iterator

from .errors import EdgeclsError

FOLDER = "savedmodel"  # the copy's place in the bundle
ENDPOINT = "serving_default"
# ops that reach outside the graph: files, Python callbacks, checkpoints
DENIED_OPS = frozenset({"ReadFile", "WriteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc", "MatchingFiles",
                        "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice",
                        "MergeV2Checkpoints", "ShardedFilename", "DeleteFile", "Rename", "CreateDir"})

_BASE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("edgecls_savedmodel_base", default=None)
_CLASS = None


@contextlib.contextmanager
def base(folder: Path) -> Iterator[None]:
    """Resolve the layer's folder against `folder` (the bundle, or a staging folder) while loading."""
    token = _BASE.set(Path(folder))
    try:
        yield
    finally:
        _BASE.reset(token)


def signature(path: Path, endpoint: str = ENDPOINT):
    """(the loaded SavedModel, its serving function) after checking the function's ops.

    Raises:
        EdgeclsError: no such signature, or an op outside `DENIED_OPS`'s limits (named).
    """
    from ._tf import tensorflow

    tf = tensorflow()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # TensorFlow raises several types for a broken folder
        raise EdgeclsError(f"{path}: cannot load the SavedModel ({type(e).__name__}: "
                           f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from e
    if endpoint not in loaded.signatures:
        have = ", ".join(loaded.signatures) or "none"
        raise EdgeclsError(f"{path}: the SavedModel has no '{endpoint}' serving signature (signatures: {have}); "
                           "save it with model.export(...) or tf.saved_model.save(..., signatures=...)")
    fn = loaded.signatures[endpoint]
    bad = sorted(_ops(fn.graph.as_graph_def()) & DENIED_OPS)
    if bad:
        raise EdgeclsError(f"{path}: the '{endpoint}' function runs {', '.join(bad)}, which reach outside the "
                           "graph (files or Python); refused")
    return loaded, fn


def _ops(graph_def) -> set[str]:
    ops = {n.op for n in graph_def.node}
    for f in graph_def.library.function:
        ops |= {n.op for n in f.node_def}
    return ops


def layer_class():
    """The registered Keras layer class (made on first use: Keras is imported only then)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from ._tf import keras

    k = keras()

    @k.saving.register_keras_serializable(package="edgecls", name="SavedModelGraph")
    class SavedModelGraph(k.layers.Layer):
        """Calls the serving function of the SavedModel in `folder` (relative to the model file's folder)."""

        def __init__(self, folder: str = FOLDER, output_key: str | None = None, **kwargs):
            kwargs["trainable"] = False
            super().__init__(**kwargs)
            if Path(folder).is_absolute() or ".." in Path(folder).parts:
                raise EdgeclsError(f"SavedModel layer folder {folder!r}: must be a folder beside the model file")
            root = _BASE.get()
            if root is None:
                raise EdgeclsError("a SavedModel layer is loaded only from a bundle (edgecls.runtimes.keras)")
            self.folder, self.output_key = folder, output_key
            self._loaded, self._fn = signature(root / folder)
            self._input = next(iter(self._fn.structured_input_signature[1]))
            outputs = self._fn.structured_outputs
            if self.output_key is None:
                self.output_key = next(iter(outputs))

        def call(self, inputs):
            return self._fn(**{self._input: inputs})[self.output_key]

        def compute_output_shape(self, input_shape):
            return tuple(self._fn.structured_outputs[self.output_key].shape)

        def get_config(self):
            return super().get_config() | {"folder": self.folder, "output_key": self.output_key}

    _CLASS = SavedModelGraph
    return _CLASS
