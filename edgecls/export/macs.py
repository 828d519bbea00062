"""Multiply-accumulates per image, counted from the ONNX graph at export (convolutions and dense layers,
shapes from ONNX shape inference at batch 1): bench puts each runtime's GOP/s beside this CPU's peak."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def macs_per_image(onnx_path: Path) -> int:
    """Multiply-accumulates for one image (Conv, Gemm, MatMul nodes of an fp32 ONNX graph)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(onnx_path))
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    graph = shape_inference.infer_shapes(model).graph
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in [*graph.value_info, *graph.output, *graph.input]}
    weights = {init.name: list(init.dims) for init in graph.initializer}
    total = 0
    for node in graph.node:
        out = shapes.get(node.output[0])
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if not out or not w or not all(out):
            continue
        if node.op_type == "Conv":  # weight (Cout, Cin/groups, kh, kw)
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):  # weight (K, N)
            total += int(np.prod(out)) * int(w[0])
    return total
