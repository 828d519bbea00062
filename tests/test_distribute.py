"""Strategies: TF_CONFIG checks, the distributed loop on one machine, and real multi-worker runs on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.runtimes.keras import load_bundle_model
from edgecls.train import distribute as dist
from edgecls.train import recorded
from edgecls.train.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]


def _tf_config(ports, kind="worker", index=0, host="127.0.0.1"):
    return json.dumps({"cluster": {"worker": [f"{host}:{p}" for p in ports]}, "task": {"type": kind, "index": index}})


@pytest.mark.parametrize("text,msg", [
    (None, "TF_CONFIG is not set"),
    ("{not json", "TF_CONFIG: not valid JSON"),
    ("[1]", "expected a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "'cluster' is missing"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "job 'ps' is not supported"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "'a' is not host:port"),
    ('{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}', "not host:port"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "listed twice"),
    ('{"cluster": {"worker": ["a:1"]}}', "'task' is missing"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task.type 'chief'"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', "task.index 2"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}', "task.index '0'"),
])
def test_bad_tf_config_is_one_line_naming_the_field(text, msg):
    with pytest.raises(EdgeclsError, match=msg) as e:
        dist.parse_tf_config(text)
    assert "\n" not in str(e.value)


def test_the_chief_writes():
    two = dist.parse_tf_config(_tf_config([1, 2], index=1))
    assert not two.chief and two.address == "127.0.0.1:2" and two.size == 2
    assert dist.parse_tf_config(_tf_config([1, 2], index=0)).chief
    with_chief = json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "worker", "index": 0}})
    assert not dist.parse_tf_config(with_chief).chief
    assert dist.is_chief("default") and dist.is_chief("mirrored")


def test_a_port_in_use_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(EdgeclsError, match=f"cannot listen on 127.0.0.1:{port}"):
            dist.check_port_free(f"127.0.0.1:{port}")


def test_global_batch_is_a_multiple_of_the_replicas():
    assert make_plan(5000, 500, replicas=3).batch_size == 66  # 64 derived, rounded up to share evenly
    assert make_plan(5000, 500, batch_size=50, replicas=3).batch_size == 50  # given: never rewritten (train refuses)


def test_cli_bad_tf_config_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker"}}')
    r = CliRunner().invoke(app, ["train", "--data", "synthetic", "--strategy", "multiworker",
                                 "--out", str(tmp_path / "b")])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == ["error: TF_CONFIG: task.index None is out of range for job 'worker' "
                                             "(0 to 0)"]
    assert not any(tmp_path.iterdir())


def test_mirrored_loop_matches_fit(tmp_path):
    """The distributed loop (one replica here) reaches the accuracy of model.fit, records the placement,
    and writes a bundle that loads and evaluates like any other."""
    from edgecls.train.fit import TrainConfig, train

    kw = {"data": "synthetic", "arch": "tiny", "epochs": 6, "batch_size": 32}
    one = train(TrainConfig(**kw, out=tmp_path / "fit"))
    loop = train(TrainConfig(**kw, out=tmp_path / "loop", strategy="mirrored"))
    m = Bundle.open(loop.bundle).manifest
    d = m["training"]["distribute"]
    assert d["strategy"] == "mirrored" and d["global_batch_size"] == 32 and d["lr_scale"] == 1.0
    assert one.manifest["training"]["distribute"]["strategy"] == "default"
    assert len(loop.history) == 6 and {"loss", "val_accuracy"} <= set(loop.history[0])
    assert loop.history[-1]["loss"] < loop.history[0]["loss"]
    a, b = one.manifest["metrics"]["test"]["accuracy"], m["metrics"]["test"]["accuracy"]
    assert b >= 0.85 and abs(a - b) <= 0.1, (a, b)
    x, y = recorded.heldout(Bundle.open(loop.bundle))
    probs = np.asarray(load_bundle_model(Bundle.open(loop.bundle))(x.astype("float32")))
    assert float((probs.argmax(1) == y).mean()) == pytest.approx(b)


def test_disk_cache_is_keyed_and_replayed(tmp_path):
    from edgecls.train import dataset, sources

    from .conftest import make_folder

    root = make_folder(tmp_path / "imgs", per_class=10, size=(16, 16))
    data = sources.folder(root, image_size=16)
    idx = np.arange(len(data))
    cache = tmp_path / "cache"

    def epoch(**kw):
        ds = dataset.tf_dataset(data, idx, batch_size=7, cache_dir=cache, **kw)
        return np.concatenate([y.numpy() for _, y in ds]), np.concatenate([x.numpy() for x, _ in ds])

    y1, x1 = epoch()
    assert list(cache.glob("*.index"))  # written on the first pass
    y2, x2 = epoch()
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(x1, data.images(idx).astype("float32"))
    epoch(shard=(2, 1))  # another shard: another file, never the first one's images
    assert len(list(cache.glob("*.index"))) == 2
    assert dataset.cache_file(cache, data, idx, None) != dataset.cache_file(cache, data, idx[:-1], None)


def test_concurrent_cache_writers_never_share_a_file(tmp_path):
    """A run still writing a cache file (TensorFlow's .lockfile, no index yet) keeps it: a second run gets a
    file of its own, and only a killed writer's lockfile is removed."""
    import subprocess
    import sys

    from edgecls.train import dataset, sources

    data = sources.synthetic(n=8)
    idx = np.arange(8)
    cache = tmp_path / "cache"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, numpy as np; from pathlib import Path; from edgecls.train import dataset, sources\n"
        f"p = dataset.cache_file({str(cache)!r}, sources.synthetic(n=8), np.arange(8), None)\n"
        "Path(f'{p}.lockfile').write_text('writing'); print(p, flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = Path(holder.stdout.readline().strip())
        assert Path(f"{first}.lockfile").exists()
        mine = dataset.cache_file(cache, data, idx, None)
        assert mine != first and Path(f"{first}.lockfile").exists()  # the live writer's file is untouched
    finally:
        holder.kill()
        holder.wait()

    dataset._CACHE_LOCKS.clear()  # as a fresh run: nothing claimed yet
    assert dataset.cache_file(cache, data, idx, None) == first  # killed: stale
    assert not Path(f"{first}.lockfile").exists()


def test_validation_cache_is_per_worker(tmp_path):
    from edgecls.train import dataset, sources

    data = sources.synthetic(n=8)
    a = dataset.cache_file(tmp_path, data, np.arange(8), None, (False, 0, "chief/0"))
    b = dataset.cache_file(tmp_path, data, np.arange(8), None, (False, 0, "worker/0"))
    assert a != b


def test_out_of_memory_under_a_strategy_is_reported_as_such(tmp_path, monkeypatch):
    """An OOM under `mirrored` is not 'another worker stopped answering', and not bad usage: exit 3."""
    import edgecls.train.loop
    from edgecls.core._tf import tensorflow

    tf = tensorflow()

    def oom(*a, **k):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4096,64,64,32]")

    monkeypatch.setattr(edgecls.train.loop, "fit", oom)
    r = CliRunner().invoke(app, ["train", "--data", "synthetic", "--arch", "tiny", "--epochs", "1",
                                 "--strategy", "mirrored", "--out", str(tmp_path / "b")])
    assert r.exit_code == 3, r.output
    lines = [x for x in r.stderr.splitlines() if x.startswith("error: ")]  # after the progress lines
    assert len(lines) == 1 and "out of memory" in lines[0] and "stopped answering" not in lines[0], r.stderr
    assert "Traceback" not in r.output
    assert "--batch-size" in lines[0] and not (tmp_path / "b").exists()
    placement = dist.Placement(dist.Strategy.multiworker, 2, 2, True, "chief/0")
    assert isinstance(dist.failure(tf.errors.UnavailableError(None, None, "socket closed"), placement),
                      dist.WorkerLost)
    assert not isinstance(dist.failure(tf.errors.InvalidArgumentError(None, None, "bad"), placement),
                          dist.WorkerLost)


def test_private_tensorflow_api_moved_is_a_clear_error(monkeypatch):
    """A TensorFlow release that moves the coordination-service API: one error naming the version."""
    import sys

    from edgecls.core._tf import tensorflow

    tf = tensorflow()
    port = _free_ports(1)[0]
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}"]},
                                                "task": {"type": "worker", "index": 0}}))
    monkeypatch.setitem(sys.modules, "tensorflow.compiler.xla.tsl.protobuf", None)  # import fails, as if moved
    with pytest.raises(EdgeclsError, match=rf"TensorFlow {re.escape(tf.__version__)} does not have the "
                                           r"coordination-service API .* tested with TensorFlow 2\.21"):
        dist.create("multiworker")


# ----------------------------------------------------------------------------- real workers on 127.0.0.1


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _worker(cwd: Path, ports, index, *args, epochs=4, timeout=30):
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CONFIG": _tf_config(ports, index=index), "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "edgecls.cli", "train", "--data", "synthetic", "--arch", "tiny",
           "--epochs", str(epochs), "--batch-size", "32", "--strategy", "multiworker",
           "--worker-timeout", str(timeout), "--out", "b", "--json", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"no exit within {timeout}s; stderr: {err[-2000:]}")
    return p.returncode, out, err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.slow
def test_two_workers_train_one_model(tmp_path):
    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import TrainConfig, train
    from edgecls.verify.parity import verify

    ports = _free_ports(2)
    procs = [_worker(tmp_path / f"w{i}", ports, i, epochs=6) for i in range(2)]
    results = [_finish(p, 300) for p in procs]
    for rc, _out, err in results:
        assert rc == 0, err[-3000:]
    chief = tmp_path / "w0" / "b"
    assert not (tmp_path / "w1" / "b").exists() and [p.name for p in (tmp_path / "w1").iterdir()] == []
    assert json.loads(results[1][1])["bundle"] is None
    m = Bundle.open(chief).manifest
    d = m["training"]["distribute"]
    assert (d["strategy"], d["workers"], d["replicas"], d["task"]) == ("multiworker", 2, 2, "worker/0")
    assert (d["global_batch_size"], d["per_replica_batch_size"]) == (32, 16)
    assert m["training"]["epochs_run"] == 6
    single = train(TrainConfig(data="synthetic", arch="tiny", epochs=6, batch_size=32, out=tmp_path / "single"))
    a, b = single.manifest["metrics"]["test"]["accuracy"], m["metrics"]["test"]["accuracy"]
    assert abs(a - b) <= 0.1, (a, b)  # 48 held-out images: a few answers either way is noise
    assert not export(chief, ExportConfig(int8=True, calib_size=32)).failures
    assert verify(chief).passed


@pytest.mark.slow
def test_a_worker_that_never_comes_up_is_a_bounded_clear_error(tmp_path):
    ports = _free_ports(2)
    t0 = time.monotonic()
    rc, out, err = _finish(_worker(tmp_path / "w0", ports, 0, timeout=8), 120)
    assert rc == 3 and time.monotonic() - t0 < 100  # a run-time failure (README), not bad usage
    lines = _error_lines(err)
    assert len(lines) == 1 and "did not come up within 8s" in lines[0], err[-2000:]
    assert not (tmp_path / "w0" / "b").exists()


@pytest.mark.slow
def test_a_chief_that_cannot_bind_its_port(tmp_path):
    ports = _free_ports(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))
        s.listen()
        rc, out, err = _finish(_worker(tmp_path / "w0", ports, 0), 60)
    assert rc == 2 and _error_lines(err) == [f"error: TF_CONFIG: this task cannot listen on 127.0.0.1:{ports[0]} "
                                             "(Address already in use); another process holds the port, or the "
                                             "address is not this machine's"]
    assert not (tmp_path / "w0").joinpath("b").exists()


@pytest.mark.slow
def test_a_worker_killed_mid_training_stops_the_others(tmp_path):
    from edgecls.train.fit import TrainConfig, train

    previous = train(TrainConfig(data="synthetic", arch="tiny", epochs=1, out=tmp_path / "w0" / "b"))
    before = (previous.bundle / "manifest.json").read_bytes()
    ports = _free_ports(2)
    procs = [_worker(tmp_path / f"w{i}", ports, i, epochs=3000) for i in range(2)]
    time.sleep(25)  # TensorFlow imported, the cluster up, training under way (3,000 epochs: far from done)
    assert procs[0].poll() is None and procs[1].poll() is None
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    rc, out, err = _finish(procs[0], 120)
    assert rc == 3 and time.monotonic() - t0 < 90
    lines = _error_lines(err)
    assert len(lines) == 1 and "stopped answering" in lines[0], err[-3000:]
    assert (previous.bundle / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "w0").iterdir()) == ["b"]  # no staging folder
