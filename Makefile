# RankScope: `make run` opens the workbench, `make test` runs the tests (`make test-fast` skips slow ones),
# `make bench` the benchmarks.
# Everything installs into .venv. TORCH_SPEC picks the torch build: CI pins the CPU wheel
# (TORCH_SPEC=torch==2.13.0); torch goes in first so peft cannot pull a CUDA build behind it.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch>=2.2
PORT       ?= 8501
PYTEST_ARGS ?=
BIN        := $(VENV)/bin

.PHONY: run test test-fast bench samples install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: $(VENV)/.installed  ## open the workbench on the bundled sample checkpoints (http://127.0.0.1:8501)
	$(BIN)/rankscope app --port $(PORT)

test: $(VENV)/.installed-test  ## install with [test] and run the whole test suite (fuzz included)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-test  ## the inner loop: every test not marked slow
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.installed-test  ## every benchmark, one summary table
	$(BIN)/python -m bench.run

samples: $(VENV)/.installed  ## regenerate sample_checkpoints/ deterministically
	$(BIN)/rankscope samples

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
