# sparsetopo: every target sets up what it needs, so `make demo` and `make test`
# work on a fresh clone of a Debian/Ubuntu machine with nothing done first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-installed-stamp
TORCH  := torch==2.13.0
# PyTorch's CPU-only wheels; from PyPI's default index a Linux torch is a multi-GB CUDA build.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
DATA_DIR := /usr/share/datasets/fashion-mnist
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data browser test demo bench gpu-check check-torchvision lint docs clean

setup: $(STAMP) data

# torch is installed first, pinned and from the CPU index, so that nothing pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --index-url $(TORCH_INDEX) $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST comes from Debian's package; without apt the tests that need it are skipped.
data:
	@if [ -e $(DATA_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist) >/dev/null \
		|| echo "warning: could not install dataset-fashion-mnist; set SPARSETOPO_DATA to your copy"; \
	else echo "warning: no apt-get; put Fashion-MNIST in $(DATA_DIR) or set SPARSETOPO_DATA"; fi

# Headless Chromium for tests/test_report_browser.py (the report opened in a real browser); best
# effort, like the data: without it those tests are skipped.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		($(SUDO) apt-get install -y -q chromium || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)) \
		>/dev/null 2>&1 || echo "warning: could not install chromium; the report's browser tests will be skipped"; \
	else echo "warning: no apt-get; install chromium to run the report's browser tests"; fi

# The docs extra too: tests/test_docs.py builds the site strictly (and checks a broken reference fails).
test: setup $(DOCS_STAMP) browser
	$(PY) -m pytest -q

# The main job: the paper's topology-evolution study (Figure 4) at the `small`
# preset on Fashion-MNIST, then its report (demo_out/report.html).
demo: setup
	$(VENV)/bin/sparsetopo experiment evolution --preset small --out demo_out/evolution
	$(VENV)/bin/sparsetopo report demo_out

bench: setup
	$(PY) benchmarks/run.py

# The documentation site (mkdocs.yml, docs/): --strict makes a broken link or reference, or a
# docstring mkdocstrings cannot render, fail the build. The docs extra has its own stamp.
docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict -d site

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

# Dense, SET and RigL on CUDA against the CPU (masks, connection counts, one epoch's loss, epoch times);
# prints that it skipped, and succeeds, on a machine without CUDA. `make setup` installs torch's CPU build:
# install a CUDA build of torch into .venv first to run it for real.
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

# The tests that read a real torchvision (pruned resnet18/50), which `make test` skips: PyPI's torchvision
# wheels are CUDA builds whose extension needs CUDA torch's libraries, so they cannot sit beside the CPU
# torch of .venv. This makes a separate venv with PyPI's default torch 2.13.0 (+cu130, runs on a CPU) and
# torchvision 0.28.0: about 5 GB and a few minutes to download. Not part of CI.
TV_VENV ?= .venv-torchvision
TV_PIP  := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(TV_VENV)/bin/python -m pip
check-torchvision:
	[ -x $(TV_VENV)/bin/python ] || $(PYTHON) -m venv $(TV_VENV)
	$(TV_PIP) install --quiet --index-url https://pypi.org/simple $(TORCH) torchvision==0.28.0
	$(TV_PIP) install --quiet --index-url https://pypi.org/simple -e '.[test]'
	$(TV_VENV)/bin/python -c "import torchvision.extension as e; assert e._has_ops(), 'torchvision _C did not load'"
	$(TV_VENV)/bin/python -m pytest -q -k torchvision tests/test_resnet_topology.py tests/test_resnet_options.py

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(TV_VENV) demo_out site .pytest_cache
