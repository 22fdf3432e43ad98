# Two commands for a new user: `make demo` runs the pipeline on the LOBSTER samples, `make test` the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV := $(VENV)/.dev
# PyTorch first, pinned, so that the project's `torch>=2.5` is already met: on a CPU-only machine point this at a
# CPU build (e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"); GPU users keep the default.
TORCH ?= torch==2.13.0

.PHONY: demo agents test lint bench clean

# the package alone for the demo; the test and benchmark tools on top, only where they are used
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(DEV)

$(VENV)/.bench: $(DEV)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(VENV)/.bench

demo: $(STAMP)
	$(BIN)/tradefm demo

$(VENV)/.agents: $(STAMP)
	$(BIN)/pip install -q -e '.[agents]'
	touch $(VENV)/.agents

# the execution agents' table on held-out starts (runs/demo/agents/), after the demo when there is none yet
agents: $(VENV)/.agents
	@test -d runs/demo/model/model || $(BIN)/tradefm demo
	$(BIN)/tradefm agents runs/demo

test: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(DEV)
	$(BIN)/ruff check .

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/bench_book.py
	$(BIN)/python benchmarks/bench_tokenize.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/check_hawkes_tick.py
	@test -d runs/demo/model/model || $(BIN)/tradefm demo  # generation is timed on the demo's trained model
	$(BIN)/python benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
