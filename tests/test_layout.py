"""The layout shows the stages, and a rule keeps it: each package imports only packages to its left in
core → train → export → runtimes → verify → platforms → apps → bench → report → pipeline → tune → cli (runtimes
may be imported by export, verify, platforms and bench; they import only core). Read from the source with `ast`,
so nothing is imported to check it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgecls"
ORDER = ["core", "train", "export", "runtimes", "verify", "platforms", "apps", "bench", "report", "pipeline", "tune",
         "cli"]
ALLOWED = {  # package -> what it may import (besides itself)
    "core": {"_vendor"},
    "train": {"core"},
    "export": {"core", "train", "runtimes", "_vendor"},
    "runtimes": {"core", "_vendor"},
    "verify": {"core", "train", "export", "runtimes"},
    "platforms": {"core", "runtimes", "verify"},  # runs verify's device-side function in an emulated userland
    "apps": {"core", "train", "export", "runtimes", "verify"},  # its runners reach verify/bench by registry name
    "bench": {"core", "train", "export", "runtimes", "verify"},
    "report": {"core"},  # reads manifests only
    "pipeline": {"core", "train", "export", "runtimes", "verify", "bench", "report"},
    "tune": {"core", "train", "export", "runtimes", "verify", "bench", "report", "pipeline"},
    "cli": {"core", "train", "export", "runtimes", "verify", "platforms", "apps", "bench", "report", "pipeline",
            "tune"},
    "runtime": {"runtimes"},  # edgecls.runtime: the published name of runtimes.classifier
    "__init__": set(),
}
NO_TENSORFLOW = ["runtimes/__init__.py", "runtimes/onnx.py", "runtimes/tflite.py", "runtimes/openvino.py",
                 "runtimes/classifier.py"]


def _stage(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path):
    """(line, imported edgecls module) for every import in `path`, relative ones resolved."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if path.name != "__init__.py" else list(rel.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                if node.module is None:  # from . import a, b: a and b may be modules
                    for a in node.names:
                        yield node.lineno, target + [a.name]
                    continue
                yield node.lineno, target
            elif node.module and node.module.split(".")[0] == "edgecls":
                yield node.lineno, node.module.split(".")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "edgecls":
                    yield node.lineno, a.name.split(".")


def _modules():
    return [p for p in PACKAGE.rglob("*.py") if "_vendor" not in p.parts]


def test_every_module_lives_in_a_stage():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "pipeline.py", "runtime.py"], top
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")} == {
        "core", "train", "export", "runtimes", "verify", "platforms", "apps", "bench", "report", "tune", "cli",
        "_vendor"}


def test_no_import_against_the_order():
    wrong = []
    for path in _modules():
        stage = _stage(path)
        for line, target in _imports(path):
            if target[0] != "edgecls" or len(target) < 2:
                continue
            to = target[1].removesuffix(".py")
            if to == "__version__" or to == stage:
                continue
            if to not in ALLOWED[stage]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports edgecls.{'.'.join(target[1:])} "
                             f"({stage} may import only {', '.join(sorted(ALLOWED[stage])) or 'itself'})")
    assert not wrong, "\n".join(wrong)


def test_device_runtimes_import_no_tensorflow():
    for rel in NO_TENSORFLOW:
        text = (PACKAGE / rel).read_text()
        for line, target in _imports(PACKAGE / rel):
            assert target[:3] != ["edgecls", "core", "_tf"], f"{rel}:{line} imports TensorFlow's lazy loader"
        assert "import tensorflow" not in text and "from tensorflow" not in text, rel


def test_the_rule_test_sees_a_wrong_arrow():
    """The checker itself: a core module importing a training module is caught."""
    fake = PACKAGE / "core" / "_layout_probe.py"
    fake.write_text("from ..train import models\n")
    try:
        try:
            test_no_import_against_the_order()
        except AssertionError as e:
            assert "core/_layout_probe.py:1 imports edgecls.train (core may import only _vendor)" in str(e)
        else:
            raise AssertionError("the rule test did not see core importing train")
    finally:
        fake.unlink()
