# make test:  .venv, SuiteSparse headers (apt-get if missing), the scikit-sparse that builds against them,
#             skmixed editable with the test and lint extras; pytest.
# make demo:  fit the classic multilevel examples (python -m skmixed.demo), then execute notebooks/tour.ipynb
#             into build/tour.html.
# make lint:  ruff check and ruff format --check over the repository.
# make fuzz:  the property-based tests with many generated examples.
# make dist:  a wheel and an sdist in dist/.
# make bench-dask: skmixed.lmer on a Dask cluster from Parquet (benchmarks/dask_crossed.py; minutes, not in CI).
# make bench-peers: python -m benchmarks --peers: mixedlm, glmm and gpboost (pinned in
#             benchmarks/peers-requirements.txt, installed from PyPI into their own .venv-peers by `make peers-venv`)
#             fit every case beside skmixed in the same run.
# make docs:  the documentation site (user guide, API reference, executed notebooks) in build/docs/html.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.skmixed-installed
PEERS_VENV  := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.peers-installed
DOCS_STAMP := $(VENV)/.skmixed-docs-installed

.PHONY: test demo lint fuzz bench bench-dask bench-peers peers-venv dist suitesparse sksparse-version clean docs

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m skmixed.demo
	@echo "Executing notebooks/tour.ipynb into build/tour.html ..."
	env -u MPLBACKEND PYTHONPATH="$(CURDIR)" $(PY) -m nbconvert --log-level=WARN --to html --execute \
	    --ExecutePreprocessor.extra_arguments=--IPKernelApp.log_level=ERROR --output-dir build notebooks/tour.ipynb
	@echo "Open build/tour.html in a browser."

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# many more generated examples for the property-based tests than `make test` runs
fuzz: $(STAMP)
	$(PY) -m pytest -q tests/test_fuzz.py --hypothesis-profile=fuzz

bench: $(STAMP)
	$(PY) -m benchmarks

bench-dask: $(STAMP)
	$(PY) -m benchmarks.dask_crossed

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(PY) -m benchmarks --peers

# the peers' own virtualenv: never a dependency of skmixed, never needed by the tests
peers-venv: $(PEERS_STAMP)

$(PEERS_STAMP): benchmarks/peers-requirements.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q -r benchmarks/peers-requirements.txt
	@touch $(PEERS_STAMP)

dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .

$(PY):
	$(PYTHON) -m venv $(VENV)

# scikit-sparse has no wheels: it compiles against the SuiteSparse headers it finds, and its API follows them.
# 0.4.16 builds only against SuiteSparse 5 (Debian 12, Ubuntu 22.04); 0.5 needs SuiteSparse >= 7.4 (Debian 13,
# Ubuntu 24.04, Homebrew, conda-forge). pyproject.toml allows both (skmixed/_cholmod.py speaks both), so the
# matching release is installed first. The headers are looked for where scikit-sparse 0.5 looks:
# $SUITESPARSE_INCLUDE_DIR, the active conda environment, Homebrew, then /usr/local and /usr.
SS_DIRS = $${SUITESPARSE_INCLUDE_DIR:-} $${CONDA_PREFIX:+$$CONDA_PREFIX/include/suitesparse} \
	$$(brew --prefix suite-sparse 2>/dev/null)/include/suitesparse /usr/local/include/suitesparse /usr/include/suitesparse
# sets inc (the header directory), major, minor and pin (empty when no headers or no scikit-sparse for them)
SS_FIND = inc=; for d in $(SS_DIRS); do [ -f "$$d/SuiteSparse_config.h" ] && { inc=$$d; break; }; done; \
	major=; minor=; pin=; \
	if [ -n "$$inc" ]; then \
	    major=$$(sed -n 's/^\#define SUITESPARSE_MAIN_VERSION[[:space:]]*\([0-9]*\).*/\1/p' "$$inc/SuiteSparse_config.h"); \
	    minor=$$(sed -n 's/^\#define SUITESPARSE_SUB_VERSION[[:space:]]*\([0-9]*\).*/\1/p' "$$inc/SuiteSparse_config.h"); \
	    if [ "$${major:-0}" -le 5 ]; then pin=0.4.16; \
	    elif [ "$$major" -gt 7 ] || { [ "$$major" -eq 7 ] && [ "$${minor:-0}" -ge 4 ]; }; then pin=0.5.0; fi; \
	fi

# prints the SuiteSparse found and the scikit-sparse release for it
sksparse-version:
	@$(SS_FIND); echo "SuiteSparse $${major:-none}.$${minor:-} in $${inc:-(no headers)}: scikit-sparse $${pin:-none}"

# CHOLMOD headers: installed with apt-get where there is one, otherwise the command for this platform. With them,
# single-threaded OpenBLAS as the system's BLAS: libsuitesparse-dev alone brings the reference BLAS, with which
# CHOLMOD's supernodal factors run slower (benchmarks/HISTORY.md, 2026-12-02); single-threaded as the
# fits are (skmixed.blas).
suitesparse:
	@$(SS_FIND); if [ -n "$$inc" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    echo "installing libsuitesparse-dev (CHOLMOD) and libopenblas0-serial with apt-get"; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libsuitesparse-dev && \
	    { DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libopenblas0-serial || \
	      echo "libopenblas0-serial not installed: CHOLMOD keeps the reference BLAS (slower; results equal to rounding)"; }; \
	else \
	    echo "SuiteSparse (CHOLMOD) headers not found. Install them first:"; \
	    echo "  macOS:  brew install suite-sparse"; \
	    echo "  conda:  conda install -c conda-forge suitesparse   (in the active environment)"; \
	    echo "  or set SUITESPARSE_INCLUDE_DIR to the directory holding SuiteSparse_config.h"; \
	    exit 1; \
	fi

# The matching scikit-sparse, compiled against the headers found (and linked with a run path to their
# libraries when they are not the system's), then skmixed itself.
$(STAMP): pyproject.toml | $(PY) suitesparse
	$(PY) -m pip install -q --upgrade pip
	@$(SS_FIND); \
	if [ -z "$$pin" ]; then \
	    echo "SuiteSparse $$major.$$minor in $$inc: scikit-sparse 0.4.16 builds against SuiteSparse 5 and 0.5 against 7.4 or later"; \
	    exit 1; \
	fi; \
	export SUITESPARSE_INCLUDE_DIR=$$inc; \
	lib=$${SUITESPARSE_LIBRARY_DIR:-$${inc%/include/suitesparse}/lib}; \
	if [ "$$lib" != /usr/lib ] && [ -d "$$lib" ]; then \
	    export SUITESPARSE_LIBRARY_DIR=$$lib LDFLAGS="$${LDFLAGS:-} -L$$lib -Wl,-rpath,$$lib"; \
	fi; \
	echo "SuiteSparse $$major.$$minor in $$inc: installing scikit-sparse==$$pin"; \
	$(PY) -m pip install -q "scikit-sparse==$$pin"
	$(PY) -m pip install -q -e '.[test,lint]'
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
	rm -rf $(VENV) build dist *.egg-info docs/api docs/tutorials docs/jupyter_execute
