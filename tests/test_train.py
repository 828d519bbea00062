import json

import numpy as np
import pytest

from edgecls.core.bundle import Bundle
from edgecls.core.errors import EdgeclsError
from edgecls.core.files import sha256
from edgecls.core.hooks import Hooks
from edgecls.runtimes.keras import load_bundle_model
from edgecls.train import recorded
from edgecls.train.fit import TrainConfig, train


def test_bundle_contents(trained_bundle):
    b = Bundle.open(trained_bundle)
    m = b.manifest
    assert sorted(p.name for p in trained_bundle.iterdir()) == ["history.json", "manifest.json", "model.keras"]
    for entry in m["artifacts"] + m["files"]:
        path = trained_bundle / entry["file"]
        assert entry["sha256"] == sha256(path) and entry["bytes"] == path.stat().st_size
    assert m["labels"] == ["hstripes", "vstripes", "blob", "ring"]
    assert m["input"]["shape"] == [None, 16, 16, 3] and m["input"]["range"] == [0, 255]
    split = m["dataset"]["split"]
    assert len(split["test"]) == 48 and not set(split["test"]) & set(split["train"] + split["val"])
    history = json.loads((trained_bundle / "history.json").read_text())
    assert len(history) == m["training"]["epochs_run"] >= 1
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    test = m["metrics"]["test"]
    assert test["accuracy"] >= 0.9  # the synthetic patterns are easy: a broken pipeline gets ~0.25
    assert np.array(test["confusion"]).sum() == 48 and len(test["per_class"]) == 4


def test_bundle_folder_has_normal_permissions(trained_bundle):
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert trained_bundle.stat().st_mode & 0o777 == 0o777 & ~umask


def test_heldout_is_what_was_evaluated(trained_bundle):
    b = Bundle.open(trained_bundle)
    x, y = recorded.heldout(b)
    model = load_bundle_model(b)
    acc = float((np.asarray(model(x.astype("float32"))).argmax(1) == y).mean())
    assert acc == pytest.approx(b.manifest["metrics"]["test"]["accuracy"])


def _cfg(tmp_path, **kw):
    return TrainConfig(**{"data": "synthetic", "arch": "tiny", "epochs": 2, "batch_size": 32,
                          "out": tmp_path / "b", **kw})


def test_same_seed_same_metrics(tmp_path):
    a = train(_cfg(tmp_path, out=tmp_path / "a", seed=5))
    b = train(_cfg(tmp_path, out=tmp_path / "b", seed=5))
    assert a.history == [{**h, "seconds": a.history[i]["seconds"]} for i, h in enumerate(b.history)]
    assert a.manifest["metrics"] == b.manifest["metrics"]
    assert a.manifest["dataset"]["split"] == b.manifest["dataset"]["split"]


def test_ctrl_c_after_an_epoch_keeps_best_weights(tmp_path):
    class Stop(Hooks):
        def epoch_start(self, epoch, steps):
            if epoch == 3:
                raise KeyboardInterrupt

    r = train(_cfg(tmp_path, epochs=10), hooks=Stop())
    assert r.interrupted and len(r.history) == 2
    m = Bundle.open(r.bundle).manifest
    assert m["training"]["interrupted"] and m["metrics"]["test"]["images"] == 48
    load_bundle_model(Bundle.open(r.bundle))


def test_ctrl_c_in_first_epoch_leaves_previous_bundle(tmp_path):
    first = train(_cfg(tmp_path, epochs=1))
    before = (first.bundle / "manifest.json").read_bytes()

    class Stop(Hooks):
        def batch(self, step):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tmp_path, seed=9), hooks=Stop())
    assert (first.bundle / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folder left behind


@pytest.mark.parametrize("kw,msg", [({"epochs": 0}, "--epochs 0"), ({"batch_size": -1}, "--batch-size -1"),
                                    ({"lr": 5.0}, "--lr 5.0"), ({"arch": "vgg"}, "unknown architecture")])
def test_bad_options_write_nothing(tmp_path, kw, msg):
    with pytest.raises(EdgeclsError, match=msg):
        train(_cfg(tmp_path, **kw))
    assert not (tmp_path / "b").exists()


def test_tampered_model_is_refused(bundle_copy):
    with open(bundle_copy / "model.keras", "ab") as f:
        f.write(b"x")
    with pytest.raises(EdgeclsError, match=r"model\.keras: sha256 .* does not match"):
        load_bundle_model(Bundle.open(bundle_copy))


def test_bundle_open_errors(tmp_path):
    with pytest.raises(EdgeclsError, match="no such bundle folder"):
        Bundle.open(tmp_path / "missing")
    with pytest.raises(EdgeclsError, match="manifest.json: missing"):
        Bundle.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(EdgeclsError, match="corrupt manifest"):
        Bundle.open(tmp_path)
