# blr-book: `make book` builds the executable book, `make test` runs every check.
PYTHON ?= python3
# Torch is installed first, on its own, so that `pip install -e ".[dev]"` finds its
# lower bound satisfied and never reinstalls it. The default is the CPU wheel this
# machine has on disk; with CUDA use e.g.
#   make book TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH ?= torch==2.13.0
VENV = .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
RENDER_CONFIG = _build/_config.render-check.yml
# Tests and notebooks run in JOBS pytest-xdist workers (a notebook stays on one worker), each
# with one thread: the work is many small tensor ops, so processes beat threads.
JOBS ?= 2
PARALLEL = OMP_NUM_THREADS=1

.PHONY: venv book test render-check browser-check chromium mathjax lint clean results

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

# MathJax 3 from npm, served with the book (_config.yml: mathjax_path, html_static_path), so
# that the pages never load it from a CDN and the browser check runs offline.
MATHJAX = _build/mathjax/node_modules/mathjax/es5/tex-mml-chtml.js
mathjax: $(MATHJAX)

$(MATHJAX):
	@command -v npm >/dev/null || { echo "npm is needed for the local MathJax: apt-get install npm"; exit 1; }
	mkdir -p _build/mathjax
	npm install --prefix _build/mathjax --no-save --no-audit --no-fund "mathjax@3"

# The execution cache (_build/.jupyter_cache) is keyed on notebook contents only:
# drop it whenever blrlib, results/ or the dependencies change, so that a claim
# that stops holding cannot hide behind a cached output.
CACHE_INPUTS = pyproject.toml $(shell find blrlib results -type f -not -name '*.pyc' 2>/dev/null)
_build/.cache-inputs: $(CACHE_INPUTS)
	rm -rf _build/.jupyter_cache
	mkdir -p _build && touch $@

# Execute every chapter (ci scale, cached) and render HTML; warnings are errors. One thread
# per kernel: the chapters' models are small (two threads save about 15 % on an idle 2-core
# machine), while on a busy one OpenMP threads waiting for each other can slow a cell sevenfold.
book: $(STAMP) _build/.cache-inputs $(MATHJAX)
	$(PARALLEL) $(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book: _build/html/index.html"

# chromium and MathJax first: tests/test_browser_check.py uses both
test: $(STAMP) $(MATHJAX) chromium
	$(BIN)/ruff check .
	$(PARALLEL) $(BIN)/pytest -n $(JOBS) tests
	$(PARALLEL) $(BIN)/pytest -n $(JOBS) --dist loadfile --nbval-lax --nbval-current-env book/ \
		--junitxml=_build/nbval.xml
	$(BIN)/python tools/chapter_times.py _build/nbval.xml
	$(MAKE) render-check
	$(MAKE) browser-check

# Render the book with warnings as errors but without executing the notebooks
# (nbval has just run them): a copy of _config.yml with execution switched off (in _build/,
# so the local extensions' paths, relative to the config file, get a leading ../).
render-check: $(STAMP) $(MATHJAX)
	mkdir -p _build
	$(BIN)/python -c "import yaml; c = yaml.safe_load(open('_config.yml')); \
	c.setdefault('execute', {})['execute_notebooks'] = 'off'; \
	ext = c['sphinx'].get('local_extensions') or {}; \
	ext.update({k: '../' + v for k, v in ext.items()}); \
	yaml.safe_dump(c, open('$(RENDER_CONFIG)', 'w'), sort_keys=False)"
	$(BIN)/jupyter-book build . --config $(RENDER_CONFIG) -W -n --keep-going \
		--path-output _build/render-check

# Open every page that render-check built in headless Chromium (Debian's chromium package,
# installed here when missing if we are root, as on CI) and fail on MathJax errors, raw TeX,
# missing images, broken links, JavaScript errors and code wider than the page.
browser-check: $(STAMP) chromium
	$(BIN)/python tools/browser_check.py _build/render-check/_build/html

chromium:
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		{ echo "chromium is missing: apt-get install chromium (as root)"; exit 1; }

# Every full-scale experiment whose record in results/ is missing or older than its code, one
# after another (a clean working tree is required), then the Table 1 page that shows their
# numbers; commit results/ and book/table1.md afterwards.
results: $(STAMP)
	$(BIN)/python -m blrlib.experiments --stale --scale full
	$(BIN)/python -m blrlib.table1

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf _build .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -print -exec rm -rf {} +
