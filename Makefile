# make test: venv + SuiteSparse (if missing) + editable install with test extras + pytest.
# make fuzz: the property-based tests with many generated examples.
# make demo: fit the example models, print their summaries, and run notebooks/tour.ipynb into build/tour.html.
# make docs: the documentation site (user guide, API reference, executed notebooks) in build/docs/html.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.skmixed-installed
DOCS_STAMP := $(VENV)/.skmixed-docs-installed

.PHONY: test demo bench fuzz suitesparse clean docs

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m skmixed.demo

# many more generated examples for the property-based tests than `make test` runs
fuzz: $(STAMP)
	$(PY) -m pytest -q tests/test_fuzz.py --hypothesis-profile=fuzz

bench: $(STAMP)
	$(PY) -m benchmarks

$(PY):
	$(PYTHON) -m venv $(VENV)

# CHOLMOD headers are needed to build scikit-sparse (it has no wheels).
suitesparse:
	@if [ -f /usr/include/suitesparse/cholmod.h ] || [ -f /usr/local/include/suitesparse/cholmod.h ] \
	    || [ -f "$${CONDA_PREFIX:-/nonexistent}/include/cholmod.h" ] \
	    || [ -f "$${CONDA_PREFIX:-/nonexistent}/include/suitesparse/cholmod.h" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "installing libsuitesparse-dev (CHOLMOD) with apt-get"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libsuitesparse-dev; \
	else \
	    echo "SuiteSparse (CHOLMOD) headers not found. Install them first:"; \
	    echo "  macOS:  brew install suite-sparse   (then: export SUITESPARSE_INCLUDE_DIR=\$$(brew --prefix)/include/suitesparse)"; \
	    echo "  conda:  conda install -c conda-forge suitesparse"; \
	    exit 1; \
	fi

$(STAMP): pyproject.toml | $(PY) suitesparse
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# -E: every build reads every page again, so the notebooks always run against the current code;
# -W: a warning (a docstring that does not parse, a failing notebook, a broken link) fails the build
docs: $(DOCS_STAMP)
	$(PY) -m sphinx -q -E -W --keep-going -b html -d build/docs/doctrees docs build/docs/html
	@echo "open build/docs/html/index.html"

$(DOCS_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	@touch $(DOCS_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info docs/api docs/tutorials docs/jupyter_execute
