"""The HTML report as a reader sees it, in headless Chromium: a screenshot is taken, no element is wider
than the viewport, nothing scrolls inside the page, and every image loads.

Chromium's command line only: a copy of the page gets a script that measures the laid-out page and
writes its verdict into a ``<pre>``, which ``--dump-dom`` returns.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from conftest import make_idx_dataset  # noqa: E402
from sparsetopo.cli import app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (chromium) is not on PATH")

REAL = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
WINDOW = "1280,900"

CHECK = """<script>
window.addEventListener("load", () => {
  const vw = document.documentElement.clientWidth;
  const all = [...document.querySelectorAll("body *")];
  const name = e => e.tagName.toLowerCase() + ": " + (e.textContent || "").trim().slice(0, 60);
  const scrolls = (e, st) => (/(auto|scroll)/.test(st.overflowX) && e.scrollWidth > e.clientWidth + 1)
      || (/(auto|scroll)/.test(st.overflowY) && e.scrollHeight > e.clientHeight + 1);
  const imgs = [...document.images];
  const out = document.createElement("pre");
  out.id = "verdict";
  out.textContent = JSON.stringify({
    viewport: vw, page: document.documentElement.scrollWidth,
    wide: all.filter(e => e.getBoundingClientRect().right > vw + 1).map(name),
    scrolling: all.filter(e => scrolls(e, getComputedStyle(e))).map(name),
    images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    tables: document.querySelectorAll("table").length});
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args, timeout=60):
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW}",
                           *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A smoke-sized (smaller still) evolution study (on a synthetic stand-in without Fashion-MNIST) and its report."""
    root = tmp_path_factory.mktemp("browser")
    cfg = root / "data.yaml"
    # smaller than the smoke preset, so that the test stays short; the page has every part of it still
    small = "networks: 3\nhidden: [32, 32, 32]\nlimit_train: 1000\nlimit_test: 200\n"
    if REAL.exists():
        cfg.write_text(small)
    else:
        d = make_idx_dataset(root / "fm", n_train=1000, n_test=200, side=28, n_classes=10)
        cfg.write_text(small + f"data_dir: {d}\n")
    runner = CliRunner()
    res = runner.invoke(app, ["experiment", "evolution", "--preset", "smoke", "--config", str(cfg),
                              "--out", str(root / "out" / "evolution"), "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["report", str(root / "out")])
    assert res.exit_code == 0, res.output
    return root / "out" / "report.html"


@pytest.fixture(scope="module")
def verdict(report):
    page = report.with_name("checked.html")
    page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    res = _chromium("--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri())
    found = re.search(r'<pre id="verdict">(.*?)</pre>', res.stdout, re.S)
    assert found, f"no verdict from Chromium: {res.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(found.group(1)))


def test_screenshot_is_taken(report, tmp_path):
    shot = tmp_path / "report.png"
    res = _chromium(f"--screenshot={shot}", report.resolve().as_uri())
    assert shot.exists(), res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_is_wider_than_the_viewport(verdict):
    assert verdict["tables"] >= 5  # the page was laid out with its tables
    assert verdict["wide"] == []
    assert verdict["page"] <= verdict["viewport"]


def test_nothing_scrolls_inside_the_page(verdict):
    assert verdict["scrolling"] == []


def test_every_image_loads(verdict, report):
    assert verdict["images"] == report.read_text().count("data:image/png;base64,") > 0
    assert verdict["broken"] == []
