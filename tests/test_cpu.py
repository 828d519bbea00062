"""The cores bench may use: the affinity mask and the cgroup CPU quota, not /proc/cpuinfo alone."""

import os
import subprocess
import sys

import pytest

from edgecls.bench.hardware import cgroup_quota, usable_cores

CPUINFO = "".join(f"processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {cpu // 2}\n\n" for cpu in range(4))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_the_core_count_follows_the_affinity_mask():
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from edgecls.bench.hardware import usable_cores, physical_cores; u = usable_cores(); "
            "print(u['cores'], u['affinity_cpus'], physical_cores())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["1", "1", "1"]


def test_hyper_threads_in_the_mask_count_once_and_the_quota_caps(monkeypatch):
    import edgecls.bench.hardware as cpu

    # CPUs 0,1 share core 0 and 2,3 share core 1
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(cpu, "cgroup_quota", lambda: None)
    assert usable_cores(CPUINFO)["cores"] == 2 and usable_cores(CPUINFO)["affinity_cpus"] == 4
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert usable_cores(CPUINFO)["cores"] == 1
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 2}, raising=False)
    monkeypatch.setattr(cpu, "cgroup_quota", lambda: 1.5)  # a fractional quota: the next whole core
    u = usable_cores(CPUINFO)
    assert u["cores"] == 2 and u["cgroup_quota_cpus"] == 1.5
    monkeypatch.setattr(cpu, "cgroup_quota", lambda: 0.5)
    u = usable_cores(CPUINFO)
    assert u["cores"] == 1 and "capped by the cgroup CPU quota" in u["from"]


def test_cgroup_quotas_v2_and_v1(tmp_path):
    (tmp_path / "box").mkdir()
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "box" / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs
    assert cgroup_quota(tmp_path, "0::/box\n") == 2.5
    (tmp_path / "box" / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path, "0::/box\n") is None
    v1 = tmp_path / "v1"
    (v1 / "cpu" / "job").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "job" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "job" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(v1, "2:cpuacct:/x\n1:cpu:/job\n0::/\n") == 2.0
    assert cgroup_quota(tmp_path / "nowhere", "0::/\n") is None


def test_int8_notes_say_int8_pays_only_where_this_run_measured_it():
    """'int8 pays at larger batches' was said even when the same run's batch-32 int8 row was slower too."""
    from edgecls.bench.hardware import CpuInfo
    from edgecls.bench.measure import _int8_notes

    cpu = CpuInfo("x", "x86_64", 2, 2, ["AVX2", "AVX-512 VNNI"])

    def row(rt, precision, batch, p50):
        return {"runtime": rt, "precision": precision, "batch": batch, "p50_ms": p50}

    rows = [row("onnx", "fp32", 1, 1.0), row("onnx", "int8", 1, 1.6), row("onnx", "fp32", 32, 30.0),
            row("onnx", "int8", 32, 34.0), row("openvino", "fp32", 1, 1.0), row("openvino", "int8", 1, 1.2),
            row("openvino", "fp32", 32, 30.0), row("openvino", "int8", 32, 12.0)]
    notes = _int8_notes(rows, cpu)
    onnx = [n for n in notes if n.startswith("onnx")]
    assert len(onnx) == 2 and all("at every batch measured" in n and "pays" not in n for n in onnx)
    (ov,) = [n for n in notes if n.startswith("openvino")]
    assert "1.20x slower" in ov and "int8 pays at batch 32 (measured)" in ov
    # faster by its p50 but within noise (intervals overlap) is not "pays"
    rows[3] = row("onnx", "int8", 32, 29.5) | {"p50_ci_ms": [29.0, 30.5]}
    rows[2] |= {"p50_ci_ms": [29.6, 30.4]}
    assert all("pays" not in n for n in _int8_notes(rows, cpu) if n.startswith("onnx"))
    rows[3]["p50_ci_ms"] = [29.0, 29.5]
    assert any("int8 pays at batch 32" in n for n in _int8_notes(rows, cpu) if n.startswith("onnx"))
