"""A fixed-batch copy of a .tflite file, for LiteRT.js.

LiteRT.js 2.5 refuses to run a signature whose input has a dynamic batch dimension ("TensorBuffer
ranked tensor type Float32[1, 32, 32, 1] does not match expected ranked tensor type
Float32[-1, 32, 32, 1]"), and offers no call to resize an input. Our exported files declare the batch
as dynamic (`shape_signature` -1), so the app ships a copy whose every tensor's dynamic leading
dimension is fixed to `batch` (1): the same operators, weights and metadata, only the declared
shapes differ. The copy is checked natively against the original (`check_same`) before it ships.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import EdgeclsError


def fixed_batch(src: Path, dest: Path, batch: int = 1) -> int:
    """Write `src` with every dynamic (-1) leading dimension of its tensors fixed to `batch`; return how
    many tensors changed. Uses the flatbuffer schema LiteRT ships (no TensorFlow)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(src).read_bytes()
    try:
        _check_size(buf, schema)  # before unpacking: bounded by the file's size
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except EdgeclsError as e:
        raise EdgeclsError(f"{src}: {e}") from e
    except Exception as e:  # a damaged flatbuffer raises whatever its reader hits
        raise EdgeclsError(f"{src}: not a readable TFLite file ({e})") from e
    changed = 0
    for graph in model.subgraphs or []:
        for t in graph.tensors or []:
            sig = t.shapeSignature
            if sig is not None and len(sig) and sig[0] == -1:
                sig = np.array(sig, dtype=np.int32)
                sig[0] = batch
                t.shapeSignature = sig
                if t.shape is not None and len(t.shape):
                    shape = np.array(t.shape, dtype=np.int32)
                    shape[0] = batch
                    t.shape = shape
                changed += 1
    builder = flatbuffers.Builder(len(buf) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    Path(dest).write_bytes(bytes(builder.Output()))
    return changed


def _check_size(buf: bytes, schema) -> None:
    """Refuse a flatbuffer that would unpack into more than it holds. Unpacking copies every table and
    vector each time an offset names it; in a real file each lies once (its elements are at most its
    bytes), while a crafted one can name one vector from thousands of places (4.9 KB: 17 s, 255 MB).
    The elements are counted with the lazy reader first, stopping as soon as they pass the file's size."""
    budget = len(buf) + 4096
    seen = 0

    def spend(n: int) -> None:
        nonlocal seen
        seen += n
        if seen > budget:
            raise EdgeclsError(f"its tables name more elements than its {len(buf):,} bytes hold (shared offsets): "
                               "not a TFLite file edgecls wrote; refused")

    try:
        m = schema.Model.GetRootAs(buf, 0)
        spend(m.OperatorCodesLength() + m.MetadataLength() + m.SignatureDefsLength() + m.BuffersLength())
        for i in range(m.BuffersLength()):
            spend(m.Buffers(i).DataLength())
        spend(m.SubgraphsLength())
        for i in range(m.SubgraphsLength()):
            g = m.Subgraphs(i)
            spend(g.TensorsLength() + g.OperatorsLength() + g.InputsLength() + g.OutputsLength())
            for j in range(g.TensorsLength()):
                t = g.Tensors(j)
                spend(t.ShapeLength() + t.ShapeSignatureLength())
                q = t.Quantization()
                if q is not None:
                    spend(q.ScaleLength() + q.ZeroPointLength() + q.MinLength() + q.MaxLength())
            for j in range(g.OperatorsLength()):
                op = g.Operators(j)
                spend(op.InputsLength() + op.OutputsLength() + op.IntermediatesLength() + op.CustomOptionsLength())
    except EdgeclsError:
        raise
    except Exception as e:  # a damaged flatbuffer raises whatever its reader hits
        raise EdgeclsError(f"not a readable TFLite file ({type(e).__name__}: {e})") from e


def check_same(original: Path, copy: Path, images: np.ndarray) -> float:
    """Run both files natively (LiteRT) on `images`, one at a time; the largest |difference| of their
    outputs. The copy must compute exactly what the original does."""
    from ...runtimes.tflite import TFLiteRunner

    a, b = TFLiteRunner(), TFLiteRunner()
    a.load(original, threads=1)
    b.load(copy, threads=1)
    diff = 0.0
    for x in images:
        pa, pb = a.predict(x[None]), b.predict(x[None])
        diff = max(diff, float(np.abs(np.asarray(pa, np.float64) - pb).max()))
    return diff
