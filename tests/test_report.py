"""The report people open: report.html rendered in a real browser (headless Chromium)."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from edgecls.report.document import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def report(exported_copy):
    from edgecls.bench.measure import BenchConfig, bench
    from edgecls.verify.parity import verify

    verify(exported_copy)
    from edgecls.bench.decide import Constraints

    bench(exported_copy, BenchConfig(batches=[1], min_runs=5, min_time=0.01, warmup=1, rounds=1,
                                     runtimes=["onnx", "tflite"], constraints=Constraints(accept_inconclusive=True)))
    return write_report(exported_copy)


def test_report_html_is_self_contained(report):
    text = report.read_text()
    assert "## " not in text and "<h2>Recommendation</h2>" in text and "<b>Ship <code>" in text
    assert text.index("Recommendation") < text.index("<h2>Training</h2>")  # the answer leads
    assert not re.search(r"(src|href)=\"(?!data:)", text)  # nothing fetched from anywhere
    names = {"training.png", "confusion.png", "latency.png", "tradeoff.png", "sizes.png"}
    assert all((report.parent / n).is_file() for n in names)
    assert text.count('src="data:image/png;base64,') == len(names)
    md = (report.parent / "report.md").read_text()
    assert "## Recommendation" in md and "![accuracy vs latency](tradeoff.png)" in md


@needs_chromium
def test_report_renders_in_a_browser_with_every_figure(report, tmp_path):
    shot = tmp_path / "shot.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", report.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # not blank: text and figures drawn
    # every <img> decoded: a copy of the page reports its loaded images in the title
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace(
        "</body>", "<script>window.onload=()=>{const i=[...document.images];document.title="
                   "'loaded '+i.filter(x=>x.complete&&x.naturalWidth>0).length+' of '+i.length}</script></body>"))
    dom = _chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", probe.as_uri()).stdout
    found = re.search(r"<title>loaded (\d+) of (\d+)</title>", dom)
    assert found and found.group(1) == found.group(2) == "5", dom[:500]
