"""How close to the hardware's limit: multiply-accumulates per image, and this CPU's measured peak.

`macs_per_image` counts the model's multiply-accumulates from its ONNX graph (convolutions and
dense layers, shapes from ONNX shape inference at batch 1). `probe` measures what onnxruntime
reaches on a plain matrix multiply at the bench's thread count: fp32 (MatMul) and int8
(MatMulInteger, uint8 x int8), the arithmetic the models are made of. A runtime's achieved GOP/s
(2 x MACs x images/s) next to these peaks shows whether it is near the limit or wasting it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

N = 512  # the probe's square matrices: large enough to be compute-bound, a few ms per call


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


def _matmul_model(integer: bool) -> bytes:
    from onnx import TensorProto, helper

    a_type, b_type, out_type = ((TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32) if integer
                                else (TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT))
    node = helper.make_node("MatMulInteger" if integer else "MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("a", a_type, [N, N]),
                                                helper.make_tensor_value_info("b", b_type, [N, N])],
                              [helper.make_tensor_value_info("c", out_type, [N, N])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def probe(threads: int, seconds: float = 0.3) -> dict | None:
    """Peak GOP/s of onnxruntime's fp32 and int8 matrix multiply at `threads`; None without onnx packages."""
    try:
        import onnx  # noqa: F401  (builds the probe graphs)
        import onnxruntime as ort
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    result = {"method": f"onnxruntime MatMul / MatMulInteger, {N}x{N}, {threads} threads, best of the runs"}
    for key, integer in (("fp32_gops", False), ("int8_gops", True)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(_matmul_model(integer), opts, providers=["CPUExecutionProvider"])
        if integer:
            feeds = {"a": rng.integers(0, 255, (N, N), dtype=np.uint8), "b": rng.integers(-127, 127, (N, N),
                                                                                           dtype=np.int8)}
        else:
            feeds = {"a": rng.random((N, N), np.float32), "b": rng.random((N, N), np.float32)}
        sess.run(None, feeds)
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            sess.run(None, feeds)
            best = min(best, time.perf_counter() - t)
        result[key] = 2 * N ** 3 / best / 1e9
    return result
