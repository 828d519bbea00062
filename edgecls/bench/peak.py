"""How close to the hardware's limit: this CPU's measured peak.

The model's multiply-accumulates per image are counted at export (`edgecls.export.macs`). `probe`
measures what onnxruntime reaches on a plain matrix multiply at the bench's thread count: fp32 (MatMul) and int8
(MatMulInteger, uint8 x int8), the arithmetic the models are made of. A runtime's achieved GOP/s
(2 x MACs x images/s) next to these peaks shows whether it is near the limit or wasting it.
"""

from __future__ import annotations

import time

import numpy as np

N = 512  # the probe's square matrices: large enough to be compute-bound, a few ms per call


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
