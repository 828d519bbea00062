"""bench's console table: what a person decides with, one line per row within 120 columns."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from edgecls.report.console import BENCH_COLUMNS, bench_table


def _row(file, runtime, batch, p50, **more):
    return {"file": file, "runtime": runtime, "precision": "int8" if "int8" in file else "fp32", "batch": batch,
            "p50_ms": p50, "p50_ci_ms": [p50 * 0.97, p50 * 1.04], "p90_ms": p50 * 1.2, "p90_ok": True,
            "throughput_ips": batch * 1000 / p50, "speedup_vs_keras": 12.3, "speedup_vs_onnx_fp32": 1.0,
            "file_bytes": 123_456_789, "outputs_ok": True, **more}


def test_bench_table_fits_120_columns_one_line_a_row():
    rows = [_row("openvino/model.int8.xml", "openvino", 256, 1234.5678),
            _row("model.int8.tflite", "web-tflite", 32, 0.0123, p90_ok=False, runs=40),
            _row("model.onnx", "onnx", 1, 17.5, outputs_ok=False),
            _row("model.keras", "keras", 1, 215.0)]
    result = SimpleNamespace(environment={"threads": 16}, rows=rows)
    console = Console(width=120, record=True, color_system=None)
    console.print(bench_table(result, {"openvino/model.int8.xml": "pass", "model.int8.tflite": "inconclusive",
                                       "model.onnx": "pass"}))
    text = console.export_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(len(line) <= 120 for line in lines)
    header = next(line for line in lines if line.lstrip().startswith("file"))
    assert [c for c in BENCH_COLUMNS if c != "× ref"] == [c for c in BENCH_COLUMNS if c != "× ref" and c in header]
    body = [line for line in lines if line.lstrip().startswith(("openvino/", "model."))]
    assert len(body) == len(rows)  # no row wrapped onto a second line
    assert "1234.6" not in text and "1235 (1198–1284)" in text and "16 threads" in text
    assert "bad outputs" in body[[r["file"] for r in sorted(rows, key=lambda r: (r["batch"], r["p50_ms"]))]
                                   .index("model.onnx")]
    assert any("few runs" in line for line in body) and any("reference" in line for line in body)
