"""Shared fixtures: one tiny model trained on synthetic data, once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> Path:
    """A bundle of `tiny` trained on `synthetic` (a few seconds). Tests must copy it before changing it."""
    from edgecls.train.fit import TrainConfig, train

    out = tmp_path_factory.mktemp("bundles") / "synthetic-tiny"
    train(TrainConfig(data="synthetic", arch="tiny", epochs=6, batch_size=32, lr=3e-3, out=out))
    return out


@pytest.fixture
def bundle_copy(trained_bundle, tmp_path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(trained_bundle, dest)
    return dest


def make_folder(root: Path, classes=("cat", "dog"), per_class=6, size=(20, 14), fmt="PNG") -> Path:
    """root/<class>/<i>.<ext> images whose content differs by class (bright vs dark)."""
    rng = np.random.default_rng(0)
    ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "GIF": "gif", "WEBP": "webp"}[fmt]
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 80, (size[1], size[0], 3), dtype=np.uint8) + np.uint8(150 * (k % 2))
            Image.fromarray(arr).save(root / c / f"{i}.{ext}", fmt)
    return root


@pytest.fixture(scope="session")
def exported_bundle(trained_bundle, tmp_path_factory) -> Path:
    """The trained bundle exported to every format, float32, float16 and int8. Copy before changing."""
    from edgecls.export import ExportConfig, export

    dest = tmp_path_factory.mktemp("exported") / "bundle"
    shutil.copytree(trained_bundle, dest)
    result = export(dest, ExportConfig(int8=True, fp16=True, calib_size=64))
    assert not result.failures, result.failures
    return dest


@pytest.fixture
def exported_copy(exported_bundle, tmp_path) -> Path:
    dest = tmp_path / "exported"
    shutil.copytree(exported_bundle, dest)
    return dest


def write_png_bomb(path: Path, side: int = 40_000) -> Path:
    """A valid 1-bit PNG of side x side pixels (40,000²: 1.6 gigapixels) that is ~200 KB on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed 1-bit pixels, all zero
    rows = row * 1000
    body = b"".join(z.compress(rows) for _ in range(side // 1000)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path
