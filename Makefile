# para-bench: two commands do everything on a fresh machine.
#   make demo  - install into .venv, run a short real evaluation (oracle and random on pos_ood)
#   make test  - install what the tests need into .venv and run them
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch (a local wheel on the project's machines); set TORCH= to keep yours.
TORCH  ?= torch==2.13.0
export MUJOCO_GL ?= egl

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=64" wheel

install: $(BIN)/python
	$(if $(TORCH),$(BIN)/python -m pip install -q "$(TORCH)")
	$(BIN)/python -m pip install -q -e ".[dev]"

demo: install
	$(BIN)/para-bench run --agent oracle --suite pos_ood --episodes 3 --out results/demo/oracle_pos_ood
	$(BIN)/para-bench run --agent random --suite pos_ood --episodes 3 --max-steps 200 --out results/demo/random_pos_ood
	$(BIN)/para-bench table results/demo
	$(BIN)/para-bench plot results/demo --out results/demo/comparison.png

test: install
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e examples/para_bench_hello
# openpi-client pins numpy < 2: installed without its dependencies, to test against it
	$(BIN)/python -m pip install -q --no-deps "openpi-client==0.1.2"
	$(BIN)/ruff check para_bench tests benchmarks examples
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) results .pytest_cache
