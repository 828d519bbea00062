"""A .tflite file's metadata table: edgecls's own `edgecls.*` entries, and the standard TFLite
metadata of an image classifier, which MediaPipe's `ImageClassifier`, the TFLite Task Library and
Android Studio's model binding read.

The standard part is what tflite-support's metadata writers produce, written here without them
(their last release conflicts with TensorFlow 2.21; MediaPipe 1.2.3's do not import):

- an entry ``TFLITE_METADATA`` holding a ``ModelMetadata`` flatbuffer (file identifier ``M001``)
  with one ``SubGraphMetadata``: the input ``TensorMetadata`` says image, RGB or GRAYSCALE,
  ``NormalizationOptions`` mean 0 / std 1 (the model takes raw 0-255 pixels: rescaling is its first
  layer), stats 0..255; the output's names an associated file ``labels.txt`` of type
  ``TENSOR_AXIS_LABELS`` (line i is output i);
- ``labels.txt`` itself in a zip (stored, not deflated) appended after the flatbuffer, as the
  writers' ``MetadataPopulator`` packs it. Flatbuffer readers (LiteRT, `read_metadata`) ignore
  the zip; metadata readers open it.

MediaPipe accepts RGB models only ("Only RGB color space is supported"); grayscale models get
correct GRAYSCALE metadata for other readers. For uint8 input MediaPipe feeds the pixel bytes
as they are, ignoring the input's quantization, so the int8 file is right there only with input
scale 1, zero point 0 (what edgecls's int8 export gives; `input_quantization` checks it).

Needs `flatbuffers`, LiteRT's generated model schema and the vendored metadata schema; no TensorFlow.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..core.errors import EdgeclsError, require

METADATA_NAME = "TFLITE_METADATA"  # the Model.metadata entry MediaPipe and the Task Library look for
METADATA_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
#: what the writers' GetMinimumMetadataParserVersion gives for the fields written here
MIN_PARSER_VERSION = "1.0.0"
COLORS = {"rgb": "RGB", "grayscale": "GRAYSCALE"}


def _schemas():
    from .._vendor import tflite_metadata_schema as meta

    return require("ai_edge_litert.schema_py_generated", "tflite"), meta


def _tensor(meta, name: str, description: str, kind: int, props, lo: float, hi: float,
            units=None, files=None):
    t = meta.TensorMetadataT()
    t.name, t.description = name, description
    t.content = meta.ContentT()
    t.content.contentPropertiesType, t.content.contentProperties = kind, props
    t.stats = meta.StatsT()
    t.stats.min, t.stats.max = [float(lo)], [float(hi)]
    t.processUnits, t.associatedFiles = units, files
    return t


def standard_metadata(labels: list[str], *, color: str = "rgb", output_uint8: bool = False,
                      version: str = "", description: str = "") -> bytes:
    """The ``ModelMetadata`` flatbuffer of an image classifier taking raw 0-255 pixels."""
    import flatbuffers

    _, meta = _schemas()
    if color not in COLORS:
        raise EdgeclsError(f"colour {color!r}: expected one of {', '.join(COLORS)}")
    image = meta.ImagePropertiesT()
    image.colorSpace = getattr(meta.ColorSpaceType, COLORS[color])
    norm = meta.ProcessUnitT()
    norm.optionsType = meta.ProcessUnitOptions.NormalizationOptions
    norm.options = meta.NormalizationOptionsT()
    norm.options.mean, norm.options.std = [0.0], [1.0]  # (pixel - 0) / 1: the model rescales itself
    inp = _tensor(meta, "image", "Input image: raw pixel values 0-255, NHWC, no normalisation outside the model.",
                  meta.ContentProperties.ImageProperties, image, 0, 255, units=[norm])
    file = meta.AssociatedFileT()
    file.name, file.type = LABELS_FILE, meta.AssociatedFileType.TENSOR_AXIS_LABELS
    file.description = "Class names, one per line; line i is output i."
    out = _tensor(meta, "probability", "Probabilities of the classes.", meta.ContentProperties.FeatureProperties,
                  meta.FeaturePropertiesT(), 0, 255 if output_uint8 else 1, files=[file])
    sub = meta.SubGraphMetadataT()
    sub.inputTensorMetadata, sub.outputTensorMetadata = [inp], [out]
    model = meta.ModelMetadataT()
    model.name, model.version, model.author = "edgecls image classifier", version, "edgecls"
    model.description = description or f"Image classifier, {len(labels)} classes."
    model.subgraphMetadata = [sub]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def with_metadata(flatbuffer: bytes, entries: dict[str, str], *, labels: list[str] | None = None,
                  color: str = "rgb", version: str = "") -> bytes:
    """The converted model with `entries` added to its metadata table, each in a buffer of its own;
    with `labels`, also the standard metadata (``TFLITE_METADATA``) and ``labels.txt`` appended as a zip.

    As TFLite's metadata writer does: unpack with the schema's object API, append, pack again, then
    append the zip. The weights come out byte for byte and at the same alignment as the converter
    wrote them (tested). Packing again drops any zip the input had, and an entry already there is
    replaced in its own buffer, so running it twice gives the same bytes. Without `labels`, standard
    metadata already there is removed (its labels.txt would be missing).

    Raises:
        EdgeclsError: a label holding a line break; a model that is not one subgraph with one
            uint8/float32 input and output (what the standard metadata describes).
    """
    import flatbuffers

    schema, _ = _schemas()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    new = {name: value.encode() for name, value in entries.items()}
    if labels is not None:
        new[METADATA_NAME] = standard_metadata(labels, color=color, version=version,
                                               output_uint8=_io_types(schema, model, labels)[1])
    model.metadata = model.metadata or []
    have = {m.name.decode(): m.buffer for m in model.metadata}
    if labels is None and METADATA_NAME in have:  # its labels.txt cannot survive the repack: drop it whole
        model.buffers[have.pop(METADATA_NAME)] = schema.BufferT()
        model.metadata = [m for m in model.metadata if m.name.decode() != METADATA_NAME]
    for name, value in new.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value, np.uint8)
        if name in have:  # replaced in its own buffer: no orphan buffers pile up on a second run
            model.buffers[have[name]] = buffer
        else:
            model.buffers.append(buffer)
            model.metadata.append(schema.MetadataT(name=name, buffer=len(model.buffers) - 1))
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    if labels is None:
        return bytes(builder.Output())
    out = io.BytesIO(bytes(builder.Output()))
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr(LABELS_FILE, "\n".join(labels))
    return out.getvalue()


def _io_types(schema, model, labels: list[str]) -> tuple[bool, bool]:
    """(input is uint8, output is uint8), after checking the model is what the metadata describes."""
    bad = [label for label in labels if "\n" in label or "\r" in label]
    if bad:
        raise EdgeclsError(f"label {bad[0]!r}: labels.txt holds one label per line; "
                           "a label cannot contain a line break")
    graph = model.subgraphs[0]
    if len(model.subgraphs) != 1 or len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise EdgeclsError("standard TFLite metadata: expected one subgraph with one input and one output")
    kinds = schema.TensorType.UINT8, schema.TensorType.FLOAT32
    types = [graph.tensors[graph.inputs[0]].type, graph.tensors[graph.outputs[0]].type]
    if any(t not in kinds for t in types):
        raise EdgeclsError("standard TFLite metadata: input and output must be uint8 or float32")
    return types[0] == schema.TensorType.UINT8, types[1] == schema.TensorType.UINT8


def input_quantization(flatbuffer: bytes) -> tuple[float, int] | None:
    """(scale, zero point) of the model's input, or None for a float input (read in place, no unpacking)."""
    schema, _ = _schemas()
    graph = schema.Model.GetRootAs(flatbuffer, 0).Subgraphs(0)
    q = graph.Tensors(graph.Inputs(0)).Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    return float(q.Scale(0)), int(q.ZeroPoint(0))


def read_standard(path: str | Path) -> dict:
    """The standard metadata of a .tflite file, as plain values (for tests and inspection).

    Returns:
        {} for a file without ``TFLITE_METADATA``; else name, version, min_parser_version, color,
        mean, std, input_stats, output_stats, associated_files [(name, type name)], zip (member
        names of the appended zip) and labels (lines of its labels.txt).

    Raises:
        EdgeclsError: the entry is not a metadata flatbuffer (wrong file identifier).
    """
    schema, meta = _schemas()
    raw = Path(path).read_bytes()
    model = schema.Model.GetRootAs(raw, 0)
    entry = next((model.Metadata(i) for i in range(model.MetadataLength())
                  if model.Metadata(i).Name().decode() == METADATA_NAME), None)
    if entry is None:
        return {}
    buf = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    if not meta.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0):
        raise EdgeclsError(f"{path}: {METADATA_NAME} is not a TFLite metadata flatbuffer (identifier "
                           f"{buf[4:8]!r}, expected {METADATA_IDENTIFIER!r})")
    md = meta.ModelMetadataT.InitFromPackedBuf(bytearray(buf), 0)
    sub = md.subgraphMetadata[0]
    inp, out = sub.inputTensorMetadata[0], sub.outputTensorMetadata[0]
    norm = next(u.options for u in inp.processUnits or []
                if u.optionsType == meta.ProcessUnitOptions.NormalizationOptions)
    colors = {v: k for k, v in vars(meta.ColorSpaceType).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(meta.AssociatedFileType).items() if not k.startswith("_")}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = z.namelist()
            labels = z.read(LABELS_FILE).decode().split("\n") if LABELS_FILE in members else None
    except zipfile.BadZipFile:
        members, labels = [], None
    return {
        "name": md.name.decode(), "version": (md.version or b"").decode(),
        "min_parser_version": (md.minParserVersion or b"").decode(),
        "color": colors[inp.content.contentProperties.colorSpace],
        "mean": [float(v) for v in norm.mean], "std": [float(v) for v in norm.std],
        "input_stats": (float(inp.stats.min[0]), float(inp.stats.max[0])),
        "output_stats": (float(out.stats.min[0]), float(out.stats.max[0])),
        "associated_files": [(f.name.decode(), types[f.type]) for f in out.associatedFiles or []],
        "zip": members, "labels": labels,
    }
