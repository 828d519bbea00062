import gzip

import numpy as np
import pytest

from edgecls.core.errors import EdgeclsError
from edgecls.train import dataset, sources, splits

from .conftest import make_folder


def test_digits_is_real_and_scaled():
    d = sources.load("digits")
    assert len(d) == 1797 and d.classes == [str(i) for i in range(10)]
    assert d.input_shape == (32, 32, 1) and d.array.shape == (1797, 32, 32, 1)
    assert d.array.dtype == np.uint8 and d.array.max() == 255 and d.array.min() == 0
    assert not d.flip  # a mirrored digit is not a digit


def test_synthetic_is_balanced():
    d = sources.load("synthetic")
    assert d.input_shape == (16, 16, 3)
    assert set(d.counts().values()) == {60}


@pytest.mark.parametrize("seed", [0, 1])
def test_split_is_stratified_and_disjoint(seed):
    d = sources.load("digits")
    s = splits.split(d, seed=seed)
    all_idx = np.concatenate([s.train, s.val, s.test])
    assert len(np.unique(all_idx)) == len(d) == len(all_idx)
    assert abs(len(s.test) - 0.2 * len(d)) <= 10
    for k in range(10):
        share = (d.labels[s.test] == k).mean()
        assert abs(share - (d.labels == k).mean()) < 0.01
        assert (d.labels[s.val] == k).sum() >= 1


def test_split_is_seeded():
    d = sources.load("digits")
    a, b, c = splits.split(d, seed=3), splits.split(d, seed=3), splits.split(d, seed=4)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.test, c.test)


def test_limit_takes_stratified_subset():
    d = sources.load("digits")
    s = splits.split(d, limit=500)
    assert len(s.train) + len(s.val) + len(s.test) == 500
    kept = np.bincount(d.labels[np.concatenate([s.train, s.val, s.test])])
    assert np.all(np.abs(kept - 500 * np.bincount(d.labels) / len(d)) <= 1)


def test_bad_fractions():
    d = sources.load("synthetic")
    with pytest.raises(EdgeclsError, match="--val-split 1.5"):
        splits.split(d, val_fraction=1.5)
    with pytest.raises(EdgeclsError, match="--limit 0"):
        splits.split(d, limit=0)


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_fashion(root, n_train=70, n_test=20):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def test_fashion_reads_idx_with_official_split(tmp_path):
    d = sources.load("fashion-mnist", data_dir=str(_fake_fashion(tmp_path)))
    assert len(d) == 90 and d.input_shape == (28, 28, 1) and d.classes[0] == "T-shirt/top"
    s = splits.split(d, val_fraction=0.15)
    assert np.array_equal(s.test, np.arange(70, 90))  # the official test images, all of them
    assert len(s.train) + len(s.val) == 70


def test_fashion_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.FASHION_ENV, str(_fake_fashion(tmp_path)))
    assert len(sources.load("fashion-mnist")) == 90


def test_fashion_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(EdgeclsError, match="apt-get install dataset-fashion-mnist.*--data-dir"):
        sources.load("fashion-mnist", data_dir=str(tmp_path))


def test_fashion_truncated_idx(tmp_path):
    _fake_fashion(tmp_path)
    raw = gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(EdgeclsError, match="train-images-idx3-ubyte.gz: truncated IDX"):
        sources.load("fashion-mnist", data_dir=str(tmp_path))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP"])
def test_folder_source(tmp_path, fmt):
    make_folder(tmp_path / "pets", fmt=fmt)
    d = sources.load(str(tmp_path / "pets"), image_size=12)
    assert d.classes == ["cat", "dog"] and len(d) == 12 and d.input_shape == (12, 12, 3)
    assert d.ids[0] == "cat/0." + {"JPEG": "jpg", "WEBP": "webp"}.get(fmt, fmt.lower())
    x = d.images(np.array([0, 11]))
    assert x.shape == (2, 12, 12, 3) and x[1].mean() > x[0].mean() + 100  # dog bright, cat dark


def test_folder_reopens_from_ids(tmp_path):
    make_folder(tmp_path / "pets")
    d = sources.load(str(tmp_path / "pets"), image_size=12)
    again = sources.open_source(d.source, ids=d.ids[3:9], classes=d.classes)
    assert list(again.labels) == list(d.labels[3:9])
    assert np.array_equal(again.images(np.arange(6)), d.images(np.arange(3, 9)))


def test_folder_nonexistent(tmp_path):
    with pytest.raises(EdgeclsError, match="no such dataset or folder"):
        sources.load(str(tmp_path / "nope"))


def test_folder_empty(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(EdgeclsError, match="no images found"):
        sources.load(str(tmp_path))


def test_folder_one_class(tmp_path):
    make_folder(tmp_path, classes=("cat",))
    with pytest.raises(EdgeclsError, match="only one class \\('cat'\\)"):
        sources.load(str(tmp_path))


def test_folder_class_too_small_for_split(tmp_path):
    make_folder(tmp_path, per_class=6)
    for f in list((tmp_path / "dog").iterdir())[2:]:
        f.unlink()
    d = sources.load(str(tmp_path))
    with pytest.raises(EdgeclsError, match="class 'dog' has 2 images; at least 5"):
        splits.split(d)


def test_folder_bad_file_refused_naming_it(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(EdgeclsError, match=r"dog/broken\.png: .*--skip-bad"):
        sources.load(str(tmp_path))


def test_folder_skip_bad_counts(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "dog" / "empty.jpg").touch()
    (tmp_path / "cat" / "readme.txt").write_text("not an image")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0\0")  # hidden files are ignored silently
    d = sources.load(str(tmp_path), skip_bad=True)
    assert len(d) == 12 and len(d.skipped) == 2
    assert any("empty.jpg" in s for s in d.skipped)


def test_folder_mixed_sizes_and_modes(tmp_path):
    from PIL import Image

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(5):
        Image.new("L", (30 + i, 10), 30).save(tmp_path / "a" / f"{i}.png")
        Image.new("RGBA", (7, 40 + i), (200, 200, 200, 128)).save(tmp_path / "b" / f"{i}.png")
        Image.new("P", (9, 9), 3).save(tmp_path / "b" / f"p{i}.gif")
    d = sources.load(str(tmp_path), image_size=10)
    assert d.images(np.arange(len(d))).shape == (15, 10, 10, 3)


def test_tf_dataset_shapes_and_augmentation():
    d = sources.load("synthetic")
    idx = np.arange(32)
    x, y = next(iter(dataset.tf_dataset(d, idx, batch_size=32)))
    assert x.shape == (32, 16, 16, 3) and x.dtype.name == "float32" and float(x.numpy().max()) > 200
    assert np.array_equal(y.numpy(), d.labels[idx])
    xa, _ = next(iter(dataset.tf_dataset(d, idx, batch_size=32, augment=True, seed=1)))
    assert xa.shape == x.shape and not np.allclose(xa.numpy(), x.numpy())


def test_tf_dataset_streams_folder(tmp_path):
    make_folder(tmp_path)
    d = sources.load(str(tmp_path), image_size=12)
    batches = list(dataset.tf_dataset(d, np.arange(len(d)), batch_size=5, shuffle=True, seed=0))
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]
    assert sorted(np.concatenate([b[1].numpy() for b in batches])) == sorted(d.labels)


def test_subset_leaving_fewer_than_a_class_each_is_a_seeded_sample():
    # 24 held-out images of 10 classes, 16 kept: the 8 left cannot hold every class, which a stratified cut needs
    from edgecls.train.splits import subset

    labels = np.repeat(np.arange(10), [3, 3, 3, 3, 2, 2, 2, 2, 2, 2])
    kept = subset(labels, 16, seed=0)
    assert len(kept) == 16 and len(set(kept.tolist())) == 16
    assert np.array_equal(kept, subset(labels, 16, seed=0))
