"""The torch-free reader of legacy ``torch.save`` state dicts (edgecls.train.weights), on files the tests write."""

import os
import pickle

import numpy as np
import pytest

from edgecls.train.weights import WeightsError, check_shapes, read_state_dict

from .legacy_pth import MAGIC_NUMBER, _Storage, _Tensor, legacy_bytes, write_legacy

RNG = np.random.default_rng(0)
TENSORS = {"conv.weight": RNG.normal(size=(4, 3, 3, 3)).astype("float32"),
           "bn.running_mean": RNG.normal(size=4).astype("float32"),
           "bn.num_batches_tracked": np.array(7, dtype="int64"),
           "half": RNG.normal(size=(2, 5)).astype("float16")}


def test_reads_what_was_written(tmp_path):
    sd = read_state_dict(write_legacy(tmp_path / "w.pth", TENSORS))
    assert list(sd) == list(TENSORS)
    for name, value in TENSORS.items():
        assert sd[name].dtype == value.dtype and sd[name].shape == value.shape
        np.testing.assert_array_equal(sd[name], value)


def test_views_into_a_shared_storage_with_offset_and_stride(tmp_path):
    """Two tensors in one storage (offset), and a transposed one (strides): what torch writes for views."""
    base = np.arange(24, dtype="float32")
    s = _Storage("0", base)
    tensors = {"first": _Tensor(s, (2, 3)), "second": _Tensor(s, (3, 4), offset=6),
               "transposed": _Tensor(s, (3, 2), stride=(1, 3))}
    sd = read_state_dict(write_legacy(tmp_path / "w.pth", tensors))
    np.testing.assert_array_equal(sd["first"], base[:6].reshape(2, 3))
    np.testing.assert_array_equal(sd["second"], base[6:18].reshape(3, 4))
    np.testing.assert_array_equal(sd["transposed"], base[:6].reshape(2, 3).T)
    assert sd["transposed"].flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("cut", [1, 100, 2000])
def test_truncated_file_is_one_error_naming_it(tmp_path, cut):
    raw = legacy_bytes(TENSORS)
    path = tmp_path / "cut.pth"
    path.write_bytes(raw[:-cut])
    with pytest.raises(WeightsError, match=r"cut\.pth: (truncated|damaged)"):
        read_state_dict(path)


def test_empty_missing_and_zip_files(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"empty\.pth: truncated"):
        read_state_dict(tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match=r"nothere\.pth: cannot read"):
        read_state_dict(tmp_path / "nothere.pth")
    (tmp_path / "new.pth").write_bytes(b"PK\x03\x04rest of a zip")
    with pytest.raises(WeightsError, match="zip-format"):
        read_state_dict(tmp_path / "new.pth")
    (tmp_path / "text.pth").write_bytes(b"hello, not a pickle at all")
    with pytest.raises(WeightsError, match=r"text\.pth: damaged"):
        read_state_dict(tmp_path / "text.pth")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for head in (MAGIC_NUMBER, 1001, {"little_endian": True}):
            pickle.dump(head, f, protocol=2)
        pickle.dump({"w": _Evil(marker)}, f, protocol=2)
    with pytest.raises(WeightsError, match=r"evil\.pth: damaged .*refused global (posix|nt|os)\.system"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    {"w": print},  # a builtin function
    {"w": np.float32(1.0)},  # numpy's reconstructor: harmless, but not a tensor
])
def test_any_other_global_is_refused(tmp_path, payload):
    path = tmp_path / "g.pth"
    with open(path, "wb") as f:
        for head in (MAGIC_NUMBER, 1001, {"little_endian": True}):
            pickle.dump(head, f, protocol=2)
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(WeightsError, match="refused global"):
        read_state_dict(path)


def test_refuses_what_is_not_a_state_dict_of_tensors(tmp_path):
    with pytest.raises(WeightsError, match="not a named tensor"):
        read_state_dict(write_legacy(tmp_path / "a.pth", {}, obj={"epoch": 3}))
    with pytest.raises(WeightsError, match="expected a state dict"):
        read_state_dict(write_legacy(tmp_path / "b.pth", {}, obj=[1, 2]))
    with pytest.raises(WeightsError, match="bad magic number"):
        read_state_dict(write_legacy(tmp_path / "c.pth", TENSORS, magic=12345))


def test_a_tensor_outside_its_storage_is_refused(tmp_path):
    s = _Storage("0", np.arange(6, dtype="float32"))
    with pytest.raises(WeightsError, match="reaches element"):
        read_state_dict(write_legacy(tmp_path / "w.pth", {"w": _Tensor(s, (3, 3))}))


def test_a_storage_whose_count_disagrees_is_refused(tmp_path):
    s = _Storage("0", np.arange(6, dtype="float32"), numel=9)  # the reference claims 9, 6 are written
    with pytest.raises(WeightsError, match=r"w\.pth: (truncated|damaged)"):
        read_state_dict(write_legacy(tmp_path / "w.pth", {"w": _Tensor(s, (2, 3))}))


def test_check_shapes_names_the_first_difference(tmp_path):
    sd = {"a": np.zeros((2, 3), "float32"), "b": np.zeros(4, "float32"), "b.num_batches_tracked": np.zeros(())}
    check_shapes(sd, {"a": (2, 3), "b": (4,)}, "w.pth", ignore=("num_batches_tracked",))
    with pytest.raises(WeightsError, match=r"w\.pth: not the expected weights: a has shape \(2, 3\), expected"):
        check_shapes(sd, {"a": (3, 2), "b": (4,)}, "w.pth", ignore=("num_batches_tracked",))
    with pytest.raises(WeightsError, match="missing c"):
        check_shapes(sd, {"a": (2, 3), "b": (4,), "c": (1,)}, "w.pth", ignore=("num_batches_tracked",))
    with pytest.raises(WeightsError, match="unexpected tensor b"):
        check_shapes(sd, {"a": (2, 3)}, "w.pth", ignore=("num_batches_tracked",))
    sd["a"][0, 0] = np.nan
    with pytest.raises(WeightsError, match="NaN"):
        check_shapes(sd, {"a": (2, 3), "b": (4,)}, "w.pth", ignore=("num_batches_tracked",))
