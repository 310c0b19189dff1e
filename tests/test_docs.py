"""The documentation site: it builds with ``--strict``, its generated pages cover the code, and the pages
that restate the README (the NNSTD definition, the sparsify example) say exactly what it says."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from sparsetopo.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_click")


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is absent
            found = False
        if not found:
            missing.append(name)
    return missing


needs_mkdocs = pytest.mark.skipif(bool(_missing_docs_packages()),
                                  reason="the docs extra is not installed (pip install -e '.[docs]' or make docs): "
                                         f"missing {', '.join(_missing_docs_packages())}")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    # The CLI page imports sparsetopo.cli: make it this checkout's, whatever is installed.
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    res = _build(ROOT / "mkdocs.yml", out)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def _anchors(page: Path) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8")))


@needs_mkdocs
def test_the_cli_page_documents_every_command(site):
    ctx = click.Context(app, info_name="sparsetopo")
    names = [n for n in app.list_commands(ctx) if not app.get_command(ctx, n).hidden]
    assert "train" in names and "experiment" in names  # train is built lazily: it must be listed too
    anchors = _anchors(site / "cli" / "index.html")
    assert {f"sparsetopo-{n}" for n in names} <= anchors, sorted(anchors)
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--engine" in page and "--preset" in page  # the options, not only the names


@needs_mkdocs
def test_the_api_pages_are_generated_from_the_docstrings(site):
    assert "sparsetopo.nnstd.pairwise_nnstd" in _anchors(site / "api" / "nnstd" / "index.html")
    assert "sparsetopo.topology.Topology" in _anchors(site / "api" / "topology" / "index.html")
    methods = _anchors(site / "api" / "methods" / "index.html")
    # sparsify is loaded lazily by sparsetopo.methods, so the page names its module explicitly.
    assert {"sparsetopo.methods.sparsify.sparsify", "sparsetopo.methods.sparsify.Sparsifier"} <= methods
    assert "sparsetopo.training.TrainConfig" in _anchors(site / "api" / "training" / "index.html")


@needs_mkdocs
def test_a_broken_reference_fails_the_build(tmp_path):
    """--strict is what makes a broken link or cross-reference an error, not a warning."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "src").symlink_to(ROOT / "src")  # mkdocstrings' paths: [src], relative to mkdocs.yml
    with open(tmp_path / "docs" / "studies.md", "a", encoding="utf-8") as f:
        f.write("\nSee [the distance][sparsetopo.nnstd.no_such_function] and [a page](no-such-page.md).\n")
    res = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert res.returncode != 0
    log = res.stdout + res.stderr
    assert "sparsetopo.nnstd.no_such_function" in log and "no-such-page.md" in log


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_sparsify_guide_shows_the_readme_example_unchanged():
    """The README's example is the one a test executes; the guide must not drift from it."""
    def example(text: str) -> str:
        return text.split("<!-- sparsify-example -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]

    assert example((ROOT / "docs" / "sparsify.md").read_text(encoding="utf-8")) == example(_readme())


def test_the_nnstd_page_states_the_readme_definition_unchanged():
    section = _readme().split("### NNSTD, precisely\n", 1)[1].split("\n## ", 1)[0]
    definition = section.split("All intersections", 1)[0].strip()
    assert definition.startswith("1. Layer 0's input neurons correspond by identity.")
    page = (ROOT / "docs" / "nnstd.md").read_text(encoding="utf-8")
    assert definition in page
    # and the rest of the README's section, its sub-headings one level up on the page
    for paragraph in section.replace("#### ", "## ").split("\n\n"):
        assert paragraph.strip() in page, paragraph[:80]
