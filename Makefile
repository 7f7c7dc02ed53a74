# The two commands of the README: `make demo` runs the main job end to end, `make test` runs the tests.
# Both do all set-up on a fresh machine: system packages (scripts/install-system-deps.sh) and a virtualenv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup system demo test lint bench clean

# torch is pinned to 2.13.0 before the extras install: here that takes the local CPU wheel, and the `train`
# extra's range is then satisfied, so pip never pulls the multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,audio,monitor,opencv,dev]'
	touch $@

system:
	bash scripts/install-system-deps.sh

setup: system $(VENV)/.installed

demo: setup
	$(BIN)/edgefuse demo

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_trainer.py

clean:
	rm -rf $(VENV) runs build *.egg-info
