"""Runtime-only installs run the whole device workflow (slow: one fresh virtualenv per extra, from PyPI).

A bundle trained on a folder, exported, then copied alone to where the folder is not; in a fresh venv
with only `pip install edgecls[EXTRA]`: verify (against the stored Keras probabilities), bench and
predict work, and tensorflow, keras and sklearn are not even installed.
"""

import shutil

import pytest

from benchmarks.device_install import make_venv, workflow

from .conftest import make_folder


@pytest.fixture(scope="module")
def device_bundle(tmp_path_factory):
    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import TrainConfig, train

    work = tmp_path_factory.mktemp("device")
    root = make_folder(work / "photos", per_class=12, size=(16, 16))
    train(TrainConfig(data=str(root), arch="tiny", epochs=5, image_size=16, out=work / "bundle"))
    assert not export(work / "bundle", ExportConfig(int8=True, calib_size=16)).failures
    image = work / "photo.png"
    shutil.copy(next((root / "cat").iterdir()), image)
    shutil.rmtree(root)  # the device has no copy of the training folder
    return work / "bundle", image


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["onnx", "tflite", "openvino"])
def test_runtime_only_install_runs_verify_bench_predict(device_bundle, extra, tmp_path):
    bundle, image = device_bundle
    py = make_venv(extra, tmp_path / "venv")
    out = workflow(py, extra, bundle, image, tmp_path)
    assert out["verify"]["source"] == "reference" and out["verify"]["outcome"] != "fail"
    assert {r["runtime"] for r in out["bench"]["rows"]} == {extra}
    assert any("reference images" in n for n in out["bench"]["notes"])
    assert out["predict"]["artifact"]["runtime"] == extra  # --format chose it, and predict names it
    assert out["predict"]["predictions"][0]["top"][0]["label"] in ("cat", "dog")
