"""The layout shows the stages, and a rule keeps it: each package imports only the packages `ALLOWED` names —
a DAG, stated the same way in docs/architecture.md (a test compares the two). Read from the source with
`ast`, so nothing is imported to check it; registry strings ("edgecls.apps.web.runner:WebOnnxRunner") are
arrows too, checked the same way, with the lookups the rule allows and imports do not (`LOOKUPS`). The
device-runtime rule (no TensorFlow or Keras where a device install runs) is checked by importing those
modules in a fresh interpreter and reading `sys.modules`, not by searching the text.

The checker's own tests plant each kind of wrong arrow in source text held in memory: nothing is written
into the package (it may be installed read-only)."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgecls"
DOCS = PACKAGE.parent / "docs" / "architecture.md"
ALLOWED = {  # package -> what it may import (besides itself)
    "core": {"_vendor"},
    "train": {"core"},
    "runtimes": {"core", "_vendor"},
    "export": {"core", "train", "runtimes", "_vendor"},
    "verify": {"core", "train", "export", "runtimes"},
    "platforms": {"core", "runtimes", "verify"},  # runs verify's device-side function in an emulated userland
    "apps": {"core", "train", "export", "runtimes", "verify"},
    "bench": {"core", "train", "export", "runtimes", "verify"},
    "report": {"core"},  # reads manifests only
    "pipeline": {"core", "train", "export", "runtimes", "verify", "bench", "report"},
    "tune": {"core", "train", "export", "runtimes", "verify", "bench", "report", "pipeline"},
    "cli": {"core", "train", "export", "runtimes", "verify", "platforms", "apps", "bench", "report", "pipeline",
            "tune"},
    "runtime": {"runtimes"},  # edgecls.runtime: the published name of runtimes.classifier
    "__init__": set(),
}
LOOKUPS = {  # registry strings the import rule would refuse, each declared: package -> where it may look up
    "runtimes": {"apps"},  # RUNTIMES names the web app's runners (web-onnx, web-tflite): an app is run like a runtime
}
#: what a device install imports (edgecls[onnx]: a runtime and the embeddable API), and what it must not pull in
DEVICE_MODULES = ["edgecls.runtime", "edgecls.runtimes", "edgecls.runtimes.onnx", "edgecls.runtimes.tflite",
                  "edgecls.runtimes.openvino", "edgecls.runtimes.classifier", "edgecls.core.bundle"]
HEAVY = ["tensorflow", "keras", "tf_keras", "edgecls.core._tf"]
TARGET = re.compile(r"^edgecls(\.[A-Za-z_]\w*)+(:[A-Za-z_]\w*)?$")


def _stage(rel: Path) -> str:
    return rel.parts[1].removesuffix(".py")


def _arrows(rel: Path, source: str):
    """(line, imported edgecls module as a list, how) for every import and every registry string in `source`,
    the file `rel` (relative to the repository: edgecls/...); relative imports resolved; ``from edgecls import
    a, b`` yields edgecls.a and edgecls.b."""
    package = list(rel.with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "edgecls":
                target = node.module.split(".")
            else:
                continue
            if len(target) == 1:  # from edgecls import a, b / from .. import a, b: a and b may be modules
                for a in node.names:
                    yield node.lineno, target + [a.name], "imports"
            else:
                yield node.lineno, target, "imports"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "edgecls":
                    yield node.lineno, a.name.split("."), "imports"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and TARGET.match(node.value):
            target = node.value.split(":")[0].split(".")
            if target[1] in ALLOWED:  # a package of edgecls, not a metadata key such as "edgecls.labels"
                yield node.lineno, target, "looks up"


def violations(files: dict[Path, str]) -> list[str]:
    """Every arrow against the rule in `files` (path relative to the repository -> source)."""
    wrong = []
    for rel, source in files.items():
        stage = _stage(rel)
        for line, target, how in _arrows(rel, source):
            if len(target) < 2 or target[1] in ("__version__", stage):
                continue
            to = target[1].removesuffix(".py")
            allowed = ALLOWED[stage] | (LOOKUPS.get(stage, set()) if how == "looks up" else set())
            if to not in allowed:
                wrong.append(f"{rel.relative_to('edgecls')}:{line} {how} edgecls.{'.'.join(target[1:])} "
                             f"({stage} may import only {', '.join(sorted(ALLOWED[stage])) or 'itself'})")
    return wrong


def _sources() -> dict[Path, str]:
    return {p.relative_to(PACKAGE.parent): p.read_text() for p in PACKAGE.rglob("*.py") if "_vendor" not in p.parts}


def heavy_imports(modules: list[str], path: list[str] = ()) -> dict[str, list[str]]:
    """module -> the HEAVY modules that importing it (after the ones before it, in one fresh interpreter) added
    to sys.modules."""
    code = ("import importlib, json, sys\n"
            f"sys.path[:0] = {list(path)!r}\n"
            "found, seen = {}, set()\n"
            f"for m in {list(modules)!r}:\n"
            "    importlib.import_module(m)\n"
            f"    found[m] = [h for h in {HEAVY!r} if h in sys.modules and h not in seen]\n"
            "    seen.update(found[m])\n"
            "print(json.dumps(found))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_module_lives_in_a_stage():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "pipeline.py", "runtime.py"], top
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")} == {
        "core", "train", "export", "runtimes", "verify", "platforms", "apps", "bench", "report", "tune", "cli",
        "_vendor"}


def test_no_import_or_lookup_against_the_rule():
    wrong = violations(_sources())
    assert not wrong, "\n".join(wrong)


def test_every_registry_string_names_a_module_that_exists():
    """A lookup arrow is only checked if it is recognised: every registry string resolves to a real module."""
    missing = []
    for rel, source in _sources().items():
        for line, target, how in _arrows(rel, source):
            if how == "looks up":
                module = PACKAGE.parent.joinpath(*target)
                if not (module.with_suffix(".py").is_file() or (module / "__init__.py").is_file()):
                    missing.append(f"{rel}:{line} {'.'.join(target)}")
    assert not missing, missing


def test_the_rule_is_a_dag_and_the_docs_state_it():
    """One truth: the rule is the DAG `ALLOWED` (imports; the declared lookups are the only arrows against it,
    resolved when a name is looked up), and docs/architecture.md states exactly that DAG and those lookups."""
    graph = ALLOWED
    state = {}

    def visit(node, path):
        assert state.get(node) != "open", f"cycle: {' -> '.join(path + [node])}"
        if state.get(node) is None:
            state[node] = "open"
            for nxt in graph.get(node, ()):
                visit(nxt, path + [node])
            state[node] = "done"

    for node in graph:
        visit(node, [])
    block = DOCS.read_text().split("<!-- layout-rule -->")[1]
    stated = {}
    for row in re.findall(r"^\| `(\w+)` \| (.*) \|$", block, re.M):
        stated[row[0]] = set(re.findall(r"`(\w+)`", row[1]))
    assert stated == {k: v for k, v in ALLOWED.items() if k not in ("runtime", "__init__")}
    lookups = dict(re.findall(r"^- `(\w+)` looks up `(\w+)`", block, re.M))
    assert lookups == {k: next(iter(v)) for k, v in LOOKUPS.items()}


def test_device_runtimes_import_no_tensorflow_or_keras():
    found = heavy_imports(DEVICE_MODULES)
    assert not any(found.values()), found


# ------------------------------------------------------------------ the checker catches each kind of wrong arrow


@pytest.mark.parametrize("rel,source,caught", [
    ("edgecls/core/probe.py", "from ..train import models\n",
     "core/probe.py:1 imports edgecls.train (core may import only _vendor)"),
    ("edgecls/core/probe.py", "from edgecls import bench\n",
     "core/probe.py:1 imports edgecls.bench (core may import only _vendor)"),
    ("edgecls/core/probe.py", "from .. import report, core\n",
     "core/probe.py:1 imports edgecls.report (core may import only _vendor)"),
    ("edgecls/core/probe.py", "import edgecls.export.onnx\n",
     "core/probe.py:1 imports edgecls.export.onnx (core may import only _vendor)"),
    ("edgecls/runtimes/probe.py", 'R = {"x": "edgecls.bench.measure:bench"}\n',
     "runtimes/probe.py:1 looks up edgecls.bench.measure (runtimes may import only _vendor, core)"),
    ("edgecls/export/probe.py", 'R = {"x": "edgecls.apps.web.runner:WebOnnxRunner"}\n',
     "export/probe.py:1 looks up edgecls.apps.web.runner"),
])
def test_the_checker_sees_a_planted_wrong_arrow(rel, source, caught):
    wrong = violations({Path(rel): source})
    assert any(caught in w for w in wrong), wrong


def test_the_checker_allows_the_declared_lookup_and_nothing_else():
    ok = violations({Path("edgecls/runtimes/probe.py"): 'R = {"w": "edgecls.apps.web.runner:WebOnnxRunner"}\n'})
    imported = violations({Path("edgecls/runtimes/probe.py"): "from ..apps.web import runner\n"})
    assert ok == [] and imported and "imports edgecls.apps" in imported[0]


def test_the_device_check_sees_keras_however_it_is_imported(tmp_path):
    """A module that imports Keras by a name the old text search missed (`import keras`, importlib) is caught."""
    (tmp_path / "probe_keras.py").write_text("import keras\n")
    (tmp_path / "probe_importlib.py").write_text("import importlib\nimportlib.import_module('tensorflow')\n")
    (tmp_path / "probe_clean.py").write_text("import json\n")
    found = heavy_imports(["probe_keras", "probe_importlib", "probe_clean"], [str(tmp_path)])
    assert "keras" in found["probe_keras"] and found["probe_clean"] == []
    found = heavy_imports(["probe_clean", "probe_importlib"], [str(tmp_path)])
    assert "tensorflow" in found["probe_importlib"] and found["probe_clean"] == []
