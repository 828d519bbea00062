"""Evidence sized to each question (edgecls/verify/evidence.py): float files on every reachable image and
label-free variants, edge cases apart, int8 files on unseen images and --images, and a useful ending."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecls.cli import app
from edgecls.core.bundle import Bundle
from edgecls.core.gates import drop_within_changes, gates, judge
from edgecls.core.names import Precision
from edgecls.core.stats import Outcome, judge_drop, judge_rate, rate_interval
from edgecls.verify.parity import verify

from .conftest import make_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def folder_bundle(tmp_path_factory):
    """A 200-image, 2-class folder (40 held-out, 16 validation images), `tiny` trained on it, exported to ONNX
    fp32 and int8: the seed's own case, small."""
    from edgecls.export import ExportConfig, export
    from edgecls.train.fit import TrainConfig, train

    tmp = tmp_path_factory.mktemp("evidence")
    root = make_folder(tmp / "photos", per_class=100, size=(16, 16))
    train(TrainConfig(data=str(root), arch="tiny", epochs=5, image_size=16, out=tmp / "b"))
    assert not export(tmp / "b", ExportConfig(formats=["onnx"], int8=True, calib_size=32)).failures
    return tmp / "b"


@pytest.fixture
def folder_copy(folder_bundle, tmp_path):
    dest = tmp_path / "b"
    shutil.copytree(folder_bundle, dest)
    shutil.copytree(folder_bundle.parent / "photos", tmp_path / "photos")  # the training folder, where recorded
    return dest


def _rows(bundle) -> dict:
    return {r["file"]: r for r in Bundle.open(bundle).manifest["verify"]["rows"]}


def test_a_correct_float_file_passes_on_a_200_image_folder(folder_copy):
    r = verify(folder_copy, runtime_names=["onnx"])
    fp32 = next(x for x in r.rows if x.precision == "fp32")
    assert r.heldout_images == 40 and fp32.outcome == Outcome.passed, fp32.undecided
    kinds = fp32.judged_on["kinds"]
    assert kinds["held-out"] == 40 and kinds["validation"] == 16 and kinds["training"] == 144
    assert kinds["variant"] > 0 and fp32.judged_on["images"] == fp32.evidence.images == sum(kinds.values())
    assert fp32.edge_cases["non_finite"] == 0 and fp32.edge_cases["max_abs_diff"] < 1e-2
    int8 = next(x for x in r.rows if x.precision == "int8")  # never judged on training images or variants
    assert set(int8.judged_on["kinds"]) <= {"held-out", "validation"} and int8.judged_on["excluded_selection"] == 8
    assert int8.judged_on["kinds"]["validation"] == 8  # the half its recipe was not selected on
    stored = _rows(folder_copy)["model.onnx"]["judged_on"]  # the record names the images
    assert stored["ids_sha256"] == fp32.judged_on["ids_sha256"] and stored["kinds"] == kinds
    out = runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx"])
    assert out.exit_code == 0 and "fp32 judged on" in out.stdout and "variants" in out.stdout, out.output


def test_the_old_evidence_left_the_same_float_file_inconclusive(folder_copy):
    """On held-out + validation images alone (56) a perfect float file could not be shown to pass."""
    r = verify(folder_copy, runtime_names=["onnx"])
    fp32 = next(x for x in r.rows if x.precision == "fp32")
    e = fp32.evidence
    old = judge(gates()[Precision.fp32], np.zeros((56, 2)), np.zeros((56, 2)), np.zeros(40, np.int64))
    assert e.changed == 0 and old.outcome == Outcome.inconclusive and fp32.outcome == Outcome.passed


def _unlike_heldout_fault(monkeypatch, bundle, precision="fp32"):
    """A converted file that is right on every image like the held-out ones, and wrong on brighter ones (as a
    clipped or saturating conversion would be): answers swap on images brighter than any held-out image."""
    from edgecls.runtimes.onnx import OnnxRunner
    from edgecls.train import recorded

    x, _ = recorded.heldout(Bundle.open(bundle))
    x_val, _ = recorded.unseen(Bundle.open(bundle), set(), 10**6, parts=("val",))
    bright = max(float(x.mean(axis=(1, 2, 3)).max()), float(x_val.mean(axis=(1, 2, 3)).max()))
    real = OnnxRunner.predict

    def faulty(self, images):
        p = real(self, images)
        if self.precision == precision:
            hit = images.reshape(len(images), -1).mean(1) > bright + 1
            p[hit] = p[hit][:, ::-1]
        return p

    monkeypatch.setattr(OnnxRunner, "predict", faulty)


def test_a_fault_only_on_inputs_unlike_the_heldout_ones_fails(folder_copy, monkeypatch):
    _unlike_heldout_fault(monkeypatch, folder_copy)
    r = verify(folder_copy, runtime_names=["onnx"])
    fp32 = next(x for x in r.rows if x.precision == "fp32")
    assert fp32.outcome == Outcome.failed and fp32.evidence.lost == 0, fp32.failures  # held-out images: all right
    assert any("shown > 1%" in f for f in fp32.failures)
    res = runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx"])
    assert res.exit_code == 1 and "FAIL model.onnx (onnx)" in res.stderr


def test_edge_case_tensors_catch_gross_faults_and_stay_out_of_the_rates(folder_copy, monkeypatch):
    from edgecls.runtimes.onnx import OnnxRunner

    real = OnnxRunner.predict

    def nan_on_black(self, images):
        p = real(self, images)
        if self.precision == "fp32":
            p[images.reshape(len(images), -1).max(1) == 0] = np.nan
        return p

    monkeypatch.setattr(OnnxRunner, "predict", nan_on_black)
    r = verify(folder_copy, runtime_names=["onnx"])
    fp32 = next(x for x in r.rows if x.precision == "fp32")
    assert fp32.outcome == Outcome.failed and fp32.edge_cases["non_finite"] == 1
    assert fp32.failures == ["edge-case input all-0: non-finite output"]  # the rates saw no edge case
    assert "edge" not in json.dumps(fp32.judged_on["kinds"])


def _images_folder(root, n=30, size=(24, 18), seed=5):
    """Unlabelled images of the same kind (bright and dark), of another size and some grayscale, in sub-folders."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / "a" if i % 2 else root / "b" / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 80, (size[1], size[0], 3), dtype=np.uint8) + np.uint8(150 * (i % 2))
        img = Image.fromarray(arr)
        (img.convert("L") if i % 5 == 0 else img).save(sub / f"u{i}.png")
    return root


def test_images_folder_judges_int8_drops_the_bundles_own_and_rejudges_when_changed(folder_copy, tmp_path):
    m = Bundle.open(folder_copy).manifest
    root = _images_folder(tmp_path / "more")
    src = m["dataset"]["source"]
    train_root = (folder_copy / src["root"]).resolve()
    for i in m["dataset"]["split"]["train"][:3]:  # three training images copied in: dropped, and said
        shutil.copy(train_root / i, root / f"copy-{i.replace('/', '-')}")
    r = verify(folder_copy, runtime_names=["onnx"], images=str(root))
    int8 = next(x for x in r.rows if x.precision == "int8")
    assert int8.judged_on["kinds"]["images"] == 30 and r.images_folder["dropped"] == {"training": 3}
    assert any("3 images dropped: the same pixels as training images" in n for n in r.notes)
    fp32 = next(x for x in r.rows if x.precision == "fp32")
    assert "images" not in fp32.judged_on["kinds"]  # float files need no unseen images
    first = _rows(folder_copy)["model.int8.onnx"]["judged_on"]
    assert first["images_folder"]["files_sha256"] == r.images_folder["files_sha256"]
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(root / "a" / "new.png")  # the folder changes
    verify(folder_copy, runtime_names=["onnx"], images=str(root))
    again = _rows(folder_copy)["model.int8.onnx"]["judged_on"]
    assert again["kinds"]["images"] == 31 and again["ids_sha256"] != first["ids_sha256"]
    assert again["images_folder"]["files_sha256"] != first["images_folder"]["files_sha256"]


@pytest.mark.parametrize("case,msg", [
    ("missing", "no such folder"), ("file", "not a folder"), ("empty", "no image files in it"),
    ("undecodable", "none of its 2 files is a readable image"), ("one-bad", "notes.txt: not an image file"),
    ("all-training", "all 3 images are already in the bundle")])
def test_bad_images_folder_is_one_error_line_and_nothing_written(folder_copy, tmp_path, case, msg):
    root = tmp_path / "imgs"
    if case == "file":
        root.write_bytes(b"x")
    elif case != "missing":
        root.mkdir()
    if case == "undecodable":
        (root / "a.jpg").write_bytes(b"not a jpeg")
        (root / "b.png").write_bytes(b"")
    if case == "one-bad":
        _images_folder(root, n=4)
        (root / "notes.txt").write_text("hello")
    if case == "all-training":
        m = Bundle.open(folder_copy).manifest
        train_root = (folder_copy / m["dataset"]["source"]["root"]).resolve()
        for i in m["dataset"]["split"]["train"][:3]:
            shutil.copy(train_root / i, root / i.replace("/", "-"))
    before = (folder_copy / "manifest.json").read_bytes()
    for cmd in (["verify", str(folder_copy), "--runtime", "onnx"],
                ["export", str(folder_copy), "--format", "onnx", "--int8"]):
        r = runner.invoke(app, [*cmd, "--images", str(root)])
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and msg in r.stderr, r.output
        assert len(r.stderr.strip().splitlines()) == 1
        assert (folder_copy / "manifest.json").read_bytes() == before  # nothing written


def _bad_files(root):
    (root / "notes.txt").write_text("hello")
    (root / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 40)  # a truncated JPEG


@pytest.mark.parametrize("case,msg", [
    ("missing", "no such folder"), ("file", "not a folder"), ("empty", "no image files in it"),
    ("undecodable", "none of its 2 files is a readable image"),
    ("one-bad", "(and 1 more bad files); fix or remove it, or pass --skip-bad to skip bad files"),
    ("the-data", "is the --data folder"), ("in-the-data", "is inside the --data folder")])
def test_pipeline_refuses_a_bad_images_folder_before_training(tmp_path, case, msg):
    photos = make_folder(tmp_path / "photos", per_class=6, size=(16, 16))
    root = {"the-data": photos, "in-the-data": photos / "cat"}.get(case, tmp_path / "imgs")
    if case == "file":
        root.write_bytes(b"x")
    elif case in ("empty", "undecodable", "one-bad"):
        root.mkdir()
    if case == "undecodable":
        _bad_files(root)
    if case == "one-bad":
        _images_folder(root, n=4)
        _bad_files(root)
    out = tmp_path / "b"
    r = runner.invoke(app, ["pipeline", "--data", str(photos), "--arch", "tiny", "--epochs", "1", "--out", str(out),
                            "--images", str(root)])
    assert r.exit_code == 2 and r.stderr.startswith("error: --images ") and msg in r.stderr, r.output
    assert str(root) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()  # nothing trained, nothing written


def test_skip_bad_skips_unreadable_images_files_and_says_how_many(folder_copy, tmp_path):
    root = _images_folder(tmp_path / "more", n=6)
    _bad_files(root / "a")
    before = (folder_copy / "manifest.json").read_bytes()
    r = runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx", "--images", str(root)])
    assert r.exit_code == 2 and "or pass --skip-bad to skip bad files" in r.stderr, r.output
    assert (folder_copy / "manifest.json").read_bytes() == before
    r = runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx", "--images", str(root), "--skip-bad"])
    assert r.exit_code == 0, r.output
    assert f"note: --images {root}: 2 unreadable files skipped (--skip-bad), e.g. " in r.stdout
    row = _rows(folder_copy)["model.int8.onnx"]["judged_on"]
    assert row["kinds"]["images"] == 6 and row["images_folder"]["skipped"] == 2 and row["images_folder"]["found"] == 8
    r = runner.invoke(app, ["export", str(folder_copy), "--format", "onnx", "--int8", "--images", str(root),
                            "--skip-bad"])
    assert r.exit_code in (0, 1), r.output  # written (exit 1 only if an int8 file misses the gate)
    sel = Bundle.open(folder_copy).entry("model.int8.onnx")["int8"]["selected_on"]
    assert sel["images_folder"]["skipped"] == 2 and any("2 unreadable files skipped" in n
                                                        for n in sel["images_folder"]["notes"])
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    _bad_files(only_bad)
    before = (folder_copy / "manifest.json").read_bytes()
    for args in (["--images", str(only_bad), "--skip-bad"], ["--skip-bad"]):  # nothing readable; nothing to skip
        for cmd in (["verify", str(folder_copy), "--runtime", "onnx"],
                    ["export", str(folder_copy), "--format", "onnx", "--int8"]):
            r = runner.invoke(app, [*cmd, *args])
            assert r.exit_code == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
            assert ("none of its 2 files is a readable image" if "--images" in args else "add --images DIR") \
                in r.stderr, r.output
            assert (folder_copy / "manifest.json").read_bytes() == before


def test_images_of_other_sizes_and_modes_are_decoded_as_training_does(folder_copy, tmp_path):
    from edgecls.core.images import load_image
    from edgecls.train import unlabelled

    root = tmp_path / "mixed"
    (root / "deep" / "er").mkdir(parents=True)
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "big.jpg", quality=90)
    Image.fromarray(rgb[:40, :90]).convert("RGBA").save(root / "alpha.png")
    Image.fromarray(rgb[:33, :17]).convert("P").save(root / "deep" / "palette.gif")
    Image.fromarray(rgb[:20, :20, 0]).save(root / "deep" / "er" / "grey.bmp")
    Image.fromarray((rng.integers(0, 65535, (24, 24))).astype(np.uint16)).save(root / "deep" / "wide16.png")
    Image.fromarray(rgb[:64, :48]).save(root / "deep" / "er" / "w.webp")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: training folders honour the orientation tag too
    Image.fromarray(rgb[:30, :50]).save(root / "rotated.jpg", exif=exif)
    r = runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx", "--images", str(root)])
    assert r.exit_code == 0, r.output
    assert _rows(folder_copy)["model.int8.onnx"]["judged_on"]["kinds"]["images"] == 7
    u = unlabelled.load(root, (16, 16, 3))
    for name, image in zip(u.names, u.images):  # the very pixels a training folder would give
        assert np.array_equal(image, load_image(root / name, (16, 16), 3)), name


def test_images_overlapping_the_bundles_own_are_dropped_by_their_pixels_and_said(folder_copy, tmp_path):
    m = Bundle.open(folder_copy).manifest
    train_root = (folder_copy / m["dataset"]["source"]["root"]).resolve()
    root = _images_folder(tmp_path / "more", n=10)
    for i in m["dataset"]["split"]["train"][:3]:  # copies under other names: recognised by content
        shutil.copy(train_root / i, root / f"renamed-{i.replace('/', '-')}")
    shutil.copy(train_root / m["dataset"]["split"]["test"][0], root / "a" / "held.png")
    shutil.copy(root / "a" / "u1.png", root / "b" / "again.png")  # a repeat within the folder
    r = runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx", "--images", str(root)])
    assert r.exit_code == 0, r.output
    notes = [x for x in r.stdout.splitlines() if x.startswith("note: --images")]
    assert any("3 images dropped: the same pixels as training images (the model fitted them)" in x for x in notes)
    assert any("1 image dropped: the same pixels as the bundle's held-out images" in x for x in notes)
    assert any("1 image dropped: repeats of another image in the folder" in x for x in notes)
    row = _rows(folder_copy)["model.int8.onnx"]["judged_on"]
    assert row["kinds"]["images"] == 10 and row["images_folder"]["dropped"] == {"training": 3, "held-out": 1,
                                                                                 "repeats": 1}


def test_a_huge_images_folder_is_capped_sampled_and_said(folder_copy, tmp_path, monkeypatch):
    from edgecls.train import unlabelled

    monkeypatch.setattr(unlabelled, "MAX_IMAGES", 12)
    root = _images_folder(tmp_path / "many", n=30)
    r = runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx", "--images", str(root)])
    assert r.exit_code == 0, r.output
    assert f"note: --images {root}: 30 files, over the cap of 12: a seeded sample of 12 decoded" in r.stdout
    row = _rows(folder_copy)["model.int8.onnx"]["judged_on"]
    assert row["kinds"]["images"] == 12 and row["images_folder"]["sampled"] and row["images_folder"]["found"] == 30
    first = row["images_folder"]["files_sha256"]
    unlabelled.forget()  # decoded afresh: the same seeded sample
    runner.invoke(app, ["verify", str(folder_copy), "--runtime", "onnx", "--images", str(root)])
    assert _rows(folder_copy)["model.int8.onnx"]["judged_on"]["images_folder"]["files_sha256"] == first


def _count_decodes(monkeypatch):
    from edgecls.train import unlabelled

    calls = []
    real = unlabelled.load_image

    def counted(path, size, channels=3):
        calls.append(str(path))
        return real(path, size, channels)

    unlabelled.forget()
    monkeypatch.setattr(unlabelled, "load_image", counted)
    return calls


def test_a_pipeline_decodes_the_images_folder_once(folder_copy, tmp_path, monkeypatch):
    """The pipeline's up-front check (at the input training gives), export's selection and verify share one
    decode; a changed folder is read again."""
    from edgecls.export import ExportConfig, export
    from edgecls.pipeline import PipelineConfig
    from edgecls.train.fit import TrainConfig

    root = _images_folder(tmp_path / "more", n=20)
    calls = _count_decodes(monkeypatch)
    m = Bundle.open(folder_copy).manifest
    cfg = PipelineConfig(train=TrainConfig(data=str((folder_copy / m["dataset"]["source"]["root"]).resolve()),
                                           arch="tiny", image_size=16, seed=m["dataset"]["split"]["seed"]),
                         export=ExportConfig(formats=["onnx"], int8=True, calib_size=32), images=str(root))
    cfg.validate()  # before training: checked and decoded at 16x16x3
    assert len(calls) == 20
    export(folder_copy, cfg._export_config())  # the accuracy-aware selection set takes half of them
    verify(folder_copy, runtime_names=["onnx"], images=str(root))
    assert len(calls) == 20 and sorted(calls) == sorted(str(p) for p in root.rglob("*.png"))
    assert Bundle.open(folder_copy).entry("model.int8.onnx")["int8"]["selected_on"]["kinds"]["images"] == 10
    Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).save(root / "a" / "new.png")  # the folder changes
    r = verify(folder_copy, runtime_names=["onnx"], images=str(root))
    assert len(calls) == 20 + 21 and r.images_folder["images"] == 21


def test_a_folder_too_large_to_hold_before_training_is_checked_then_decoded_once(tmp_path, monkeypatch):
    from edgecls.train import unlabelled

    root = _images_folder(tmp_path / "more", n=8)
    calls = _count_decodes(monkeypatch)
    monkeypatch.setattr(unlabelled, "KEEP_CHECKED_BYTES", 8 * 16 * 16 * 3 - 1)  # one byte short of holding them
    assert unlabelled.check(root, shape=(16, 16, 3)) == 8 and len(calls) == 8  # checked, pixels not kept
    unlabelled.load(root, (16, 16, 3))
    unlabelled.load(root, (16, 16, 3))
    assert len(calls) == 16
    unlabelled.load(root, (12, 12, 3))  # another input size: decoded at it
    assert len(calls) == 24


def test_the_same_folder_spelt_another_way_is_the_same_decode(tmp_path, monkeypatch):
    from edgecls.train import unlabelled

    root = _images_folder(tmp_path / "more", n=6)
    calls = _count_decodes(monkeypatch)
    first = unlabelled.load(str(root), (16, 16, 3))
    monkeypatch.chdir(tmp_path)
    again = unlabelled.load("./more/a/..", (16, 16, 3))
    assert len(calls) == 6 and again.names == first.names and again.files_sha256 == first.files_sha256


def test_export_then_verify_decode_the_images_folder_once(folder_copy, tmp_path, monkeypatch):
    from edgecls.export import ExportConfig, export

    root = _images_folder(tmp_path / "more", n=14)
    calls = _count_decodes(monkeypatch)
    export(folder_copy, ExportConfig(formats=["onnx"], int8=True, calib_size=32, images=str(root)))
    assert len(calls) == 14
    verify(folder_copy, runtime_names=["onnx"], images=str(root))
    assert len(calls) == 14


def test_export_images_choose_the_recipe_and_verify_leaves_them_out(folder_copy, tmp_path):
    from edgecls.export import ExportConfig, export

    root = _images_folder(tmp_path / "more", n=40)
    assert export(folder_copy, ExportConfig(formats=["onnx"], int8=True, calib_size=32, images=str(root))).passed
    t = Bundle.open(folder_copy).entry("model.int8.onnx")["int8"]
    assert t["selected_on"]["kinds"] == {"validation": 8, "images": 20} and len(t["selected_on"]["digests"]) == 20
    r = verify(folder_copy, runtime_names=["onnx"], images=str(root))
    int8 = next(x for x in r.rows if x.precision == "int8")
    assert int8.judged_on["kinds"]["images"] == 20 and int8.judged_on["excluded_selection"] == 28


def test_device_side_verify_shows_float_parity_from_the_reference(folder_copy, monkeypatch):
    from edgecls import runtimes
    from edgecls.export.reference import FLOAT_IMAGES, load_float_inputs

    b = Bundle.open(folder_copy)
    section = b.manifest["reference"]["float_inputs"]
    assert section["images"] == len(load_float_inputs(b).images) <= FLOAT_IMAGES and section["kinds"]["variant"]
    monkeypatch.setattr(runtimes.runner_class("keras"), "installed", classmethod(lambda cls: False))
    b.manifest["dataset"]["source"] = {"name": "folder", "root": "../nowhere", "image_size": 16}
    b.save()
    r = verify(folder_copy, runtime_names=["onnx"])
    fp32 = next(x for x in r.rows if x.precision == "fp32")
    int8 = next(x for x in r.rows if x.precision == "int8")
    assert r.source == "reference" and fp32.outcome == Outcome.passed, fp32.undecided
    assert int8.judged_on["kinds"] == {"held-out": 40}  # stored float inputs never judge an int8 file
    with pytest.raises(Exception, match="--images .* cannot be judged here: TensorFlow is not installed"):
        verify(folder_copy, runtime_names=["onnx"], images=str(folder_copy))


# ------------------------------------------------------------------- the drop is bounded by changed answers


def test_a_drop_never_exceeds_the_share_of_changed_answers():
    """On any answers: lost - gained <= lost + gained <= changed; checked on random probability tables."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, extra, k = rng.integers(1, 60), rng.integers(0, 60), rng.integers(2, 5)
        ref, probs = rng.dirichlet(np.ones(k), n + extra), rng.dirichlet(np.ones(k), n + extra)
        labels = rng.integers(0, k, n)
        e = judge(gates()[Precision.int8], probs, ref, labels)
        assert e.lost - e.gained <= e.changed and (e.lost - e.gained) / n <= (e.changed - 0) / n + 1e-12
        changed_labelled = int((probs[:n].argmax(1) != ref[:n].argmax(1)).sum())
        assert e.lost - e.gained <= changed_labelled


def _binom_pmf(n: int, p: float):
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p)
            + (n - k) * math.log1p(-p) for k in range(n + 1)]
    return [math.exp(v) for v in logs]


@pytest.mark.parametrize("n", [381, 600, 1000, 3000])
@pytest.mark.parametrize("limit", [1.0, 2.0])
def test_the_bound_passes_a_drop_at_its_limit_at_most_2_5_percent_of_the_time(n, limit):
    """Worst case for the bound: every changed answer is a lost one, and the true drop equals the limit. A pass
    by the bound needs the change rate's upper end <= the limit; enumerate every outcome of n images."""
    p = limit / 100
    false_pass = sum(w for k, w in enumerate(_binom_pmf(n, p)) if 100 * rate_interval(k, n)[1] <= limit)
    assert false_pass <= 0.025


def test_few_labels_many_unlabelled_images_show_the_drop():
    """40 held-out images cannot show a drop within 1 point; 500 unlabelled images with no changed answer can."""
    drop = judge_drop(0, 0, 40, 1.0)
    assert drop.outcome == Outcome.inconclusive
    shown = drop_within_changes(drop, judge_rate("changed answers", 0, 540, 1.0))
    assert shown.outcome == Outcome.passed and shown.high <= 1.0 and "bounded by changed answers" in shown.count
    not_shown = drop_within_changes(drop, judge_rate("changed answers", 3, 540, 1.0))  # upper end 1.6%
    assert not_shown.outcome == Outcome.inconclusive
    assert drop_within_changes(judge_drop(10, 0, 40, 1.0), judge_rate("changed answers", 0, 540, 1.0)).outcome \
        == Outcome.failed  # a drop shown beyond the limit stays a fail
    labels = np.zeros(40, np.int64)
    ref = np.tile([0.9, 0.1], (540, 1))
    e = judge(gates(1.0)[Precision.int8], ref.copy(), ref, labels)
    assert e.outcome == Outcome.passed  # the file: shown, with 40 labels


# ------------------------------------------------------------------- the ending


def _bench_rows(m, files):
    sha = {a["file"]: a["sha256"] for a in m["artifacts"]}
    return {"rows": [{"file": f, "runtime": "onnx", "device": "cpu", "batch": 1, "p50_ms": p, "p90_ms": p,
                      "sha256": sha[f], "bundle_id": m["bundle_id"]} for f, p in files]}


def test_ship_the_shown_file_and_say_what_would_decide_the_others(folder_copy):
    from edgecls.bench.decide import Constraints, decide

    verify(folder_copy, runtime_names=["onnx"])
    m = Bundle.open(folder_copy).manifest
    m["bench"] = _bench_rows(m, [("model.onnx", 2.0), ("model.int8.onnx", 1.0)])
    d = decide(m, Constraints())
    assert d.chosen.file == "model.onnx"
    other = d.others[0]
    assert "images would decide" in other.reason and "--images DIR" in other.reason
    for r in m["verify"]["rows"]:  # nothing shown: say what evidence would change that
        if r["file"] == "model.onnx":
            r["outcome"], r["undecided"] = "inconclusive", ["changed answers 0.00% (0 of 56; …): about 382 images "
                                                            "would decide at the observed rates"]
    d = decide(m, Constraints())
    assert not d.found and "--images DIR" in d.ruled_out_by
    assert re.search(r"about [\d,]+ images would decide the closest one", d.ruled_out_by)


@pytest.mark.slow
def test_pipeline_with_images_decodes_them_once_and_judges_int8_on_them(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "photos", per_class=40, size=(16, 16))
    more = _images_folder(tmp_path / "more", n=30, size=(16, 16))
    _bad_files(more)
    calls = _count_decodes(monkeypatch)
    r = runner.invoke(app, ["pipeline", "--data", str(root), "--arch", "tiny", "--epochs", "3",
                            "--out", str(tmp_path / "b"), "--batch", "1", "--runtime", "onnx", "--images", str(more),
                            "--skip-bad"])
    assert r.exit_code in (0, 1), r.output
    assert len(calls) == 32  # 30 images and 2 unreadable files, decoded once for export and verify together
    assert "2 unreadable files skipped (--skip-bad)" in r.stdout
    m = Bundle.open(tmp_path / "b").manifest
    int8 = next(x for x in m["verify"]["rows"] if x["file"] == "model.int8.onnx")
    assert int8["judged_on"]["kinds"]["images"] == 15 and int8["judged_on"]["images_folder"]["skipped"] == 2


@pytest.mark.slow
def test_pipeline_on_a_200_image_folder_ships_a_file_exit_0(tmp_path):
    root = make_folder(tmp_path / "photos", per_class=100, size=(16, 16))
    r = runner.invoke(app, ["pipeline", "--data", str(root), "--arch", "tiny", "--epochs", "5", "--out",
                            str(tmp_path / "b"), "--batch", "1"])
    assert r.exit_code == 0, r.output
    assert "ship " in r.stdout and "nothing to ship" not in r.stdout
    d = Bundle.open(tmp_path / "b").manifest["decision"]
    assert d["found"] and d["chosen"]["outcome"] == "pass"
