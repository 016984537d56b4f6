# Spindle's everyday commands. A fresh Debian 12 machine needs only python3 with pip: uv is
# installed with pip when it is missing.
#
#   make venv      .venv from uv.lock (uv sync --frozen)
#   make engines   .engines/<engine> virtual environments from engines/<engine>.txt
#   make run       migrate the database, then serve (SPINDLE_PORT, SPINDLE_DATA_DIR, ...)
#   make test      pytest; extra arguments in PYTEST_ARGS="-k claim -x"
#   make lint      ruff check, ruff format --check, mypy
#   make bench     the benchmarks in bench/

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
ENGINES := snakemake cwltool miniwdl
PYTEST_ARGS ?=

# The uv binary: from PATH, else the one `pip install uv` put beside $(PYTHON) (pip may put
# the script in a folder that is not on PATH). Never `python -m uv`: run that way, `uv pip`
# installs into that python, not into the environment VIRTUAL_ENV names. Recursive (=), so
# it is looked up again after the `uv` target installed it.
UV = $(or $(shell command -v uv 2>/dev/null),$(shell $(PYTHON) -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null),uv-not-installed)

.PHONY: help uv venv engines run test lint bench

help:
	@sed -n 's/^#   make /make /p' $(MAKEFILE_LIST)

# Debian's own python3 refuses a plain `pip install` (PEP 668); then install it anyway, as
# uv is a single self-contained binary that touches nothing else.
uv:
	@if [ "$(UV)" = uv-not-installed ]; then \
	  $(PYTHON) -m pip install --quiet uv \
	  || $(PYTHON) -m pip install --quiet --break-system-packages uv; \
	fi

# uv sync is a no-op in well under a second when .venv already matches uv.lock.
# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on the CI machines) Python
# never caches its bytecode, and every process would compile its imports again.
venv: uv
	$(UV) sync --frozen --compile-bytecode

engines: $(ENGINES:%=.engines/%/.stamp)

# Each engine in a virtual environment of its own, so its dependencies never meet Spindle's;
# rebuilt only when its pinned requirements change (the stamp lives inside the venv, so
# deleting the venv rebuilds it too). `--python` names the venv outright: `uv pip` may
# otherwise prefer the interpreter that started it over VIRTUAL_ENV. `--compile-bytecode`:
# `uv pip sync` installs no bytecode, and where PYTHONDONTWRITEBYTECODE is set every run
# would compile the engine's imports again (cwltool --version 2.4 s cold, 0.7 s compiled;
# snakemake --version 8.4 s, 1.7 s; docs/benchmarks.md). The Makefile is a prerequisite so
# that a change to this recipe reaches environments built before it.
# miniwdl's environment also gets Spindle's task runner (engines/miniwdl-spindle, a plugin
# of miniwdl's, never imported by Spindle), reinstalled whenever it changes.
.engines/miniwdl/.stamp: engines/miniwdl.txt Makefile $(wildcard engines/miniwdl-spindle/*.toml engines/miniwdl-spindle/*/*.py) | uv
	$(UV) venv --quiet --allow-existing --python 3.11 .engines/miniwdl
	$(UV) pip sync --quiet --compile-bytecode --python .engines/miniwdl/bin/python engines/miniwdl.txt
	$(UV) pip install --quiet --no-deps --reinstall --compile-bytecode --python .engines/miniwdl/bin/python ./engines/miniwdl-spindle
	@touch $@

.engines/%/.stamp: engines/%.txt Makefile | uv
	$(UV) venv --quiet --allow-existing --python 3.11 .engines/$*
	$(UV) pip sync --quiet --compile-bytecode --python .engines/$*/bin/python engines/$*.txt
	@touch $@

# The settings come from the environment (SPINDLE_PORT, SPINDLE_DATA_DIR, ...) or spindle.toml.
run: venv engines
	.venv/bin/spindle db upgrade
	exec .venv/bin/spindle serve

test: venv engines
	.venv/bin/pytest $(PYTEST_ARGS)

# All three run even when one fails, so one pass reports every problem.
lint: venv
	@status=0; \
	for cmd in "ruff check" "ruff format --check" "mypy"; do \
	  echo ".venv/bin/$$cmd"; .venv/bin/$$cmd || status=1; \
	done; \
	exit $$status

bench: venv
	@if [ -d bench ]; then \
	  .venv/bin/python -m bench; \
	else \
	  echo "bench/ does not exist yet: nothing to run"; \
	fi
