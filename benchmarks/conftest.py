"""Benchmarks (not part of `make test`): `make bench` runs them and saves JSON.

The default digits model is trained and exported once per session into a temporary folder.
Fashion-MNIST benchmarks are skipped unless the dataset is installed
(apt-get install dataset-fashion-mnist).

With EDGECLS_BENCH_SMOKE=1 (`make bench-smoke`, run by CI) every benchmark runs its code on the
`tiny` model and `synthetic` data in seconds and the targets are not judged: it proves the suites
still run against today's code, not how fast anything is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SMOKE = os.environ.get("EDGECLS_BENCH_SMOKE", "") not in ("", "0")


def target(ok: bool, what: str) -> None:
    """Judge a target of the issues (not in smoke mode: the tiny model there meets no target)."""
    if not SMOKE:
        assert ok, what


def smoke_train_config(**kw):
    """The training configuration of a benchmark; in smoke mode the tiny model on synthetic data."""
    from edgecls.train.fit import TrainConfig

    if SMOKE:
        kw = kw | {"data": "synthetic", "arch": "tiny", "epochs": min(kw.get("epochs") or 2, 2), "batch_size": 32}
    return TrainConfig(**kw)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> dict:
    """`edgecls train` defaults (digits, small) and `export --int8`, timed (wall clock, one run)."""
    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import train

    out = tmp_path_factory.mktemp("bench") / "digits-small"
    t0 = time.perf_counter()
    result = train(smoke_train_config(out=out))
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exported = export(out, ExportConfig(int8=True, calib_size=64) if SMOKE else ExportConfig(int8=True))
    export_s = time.perf_counter() - t0
    assert not exported.failures
    return {"bundle": out, "train_seconds": train_s, "export_seconds": export_s, "manifest": result.manifest,
            "artifacts": exported.artifacts}


def fashion_available() -> bool:
    from edgecls.train.sources import FASHION_DEFAULT_DIR, FASHION_ENV

    root = Path(os.environ.get(FASHION_ENV) or FASHION_DEFAULT_DIR)
    return (root / "train-images-idx3-ubyte.gz").exists() or (root / "train-images-idx3-ubyte").exists()


needs_fashion = pytest.mark.skipif(not fashion_available(),
                                   reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
