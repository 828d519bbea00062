"""Benchmarks (not part of `make test`): `make bench` runs them and saves JSON.

The default digits model is trained and exported once per session into a temporary folder.
Fashion-MNIST benchmarks are skipped unless the dataset is installed
(apt-get install dataset-fashion-mnist).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> dict:
    """`edgecls train` defaults (digits, small) and `export --int8`, timed (wall clock, one run)."""
    from edgecls.export import ExportConfig, export
    from edgecls.train import TrainConfig, train

    out = tmp_path_factory.mktemp("bench") / "digits-small"
    t0 = time.perf_counter()
    result = train(TrainConfig(out=out))
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exported = export(out, ExportConfig(int8=True))
    export_s = time.perf_counter() - t0
    assert not exported.failures
    return {"bundle": out, "train_seconds": train_s, "export_seconds": export_s, "manifest": result.manifest,
            "artifacts": exported.artifacts}


def fashion_available() -> bool:
    from edgecls.data import FASHION_DEFAULT_DIR, FASHION_ENV

    root = Path(os.environ.get(FASHION_ENV) or FASHION_DEFAULT_DIR)
    return (root / "train-images-idx3-ubyte.gz").exists() or (root / "train-images-idx3-ubyte").exists()


needs_fashion = pytest.mark.skipif(not fashion_available(),
                                   reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
