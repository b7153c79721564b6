# podium: `make demo` runs the main job on embedded defaults; `make test` installs and runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
EXAMPLE := .podium/example

.PHONY: install demo example-store test test-slow test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,torch,triton,demo,text,onnx,board]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/podium demo

example-store: install
	$(BIN)/python -m podium.demo.synthetic_store $(EXAMPLE) --if-missing
	$(BIN)/podium select --tracking-uri sqlite:///$(CURDIR)/$(EXAMPLE)/mlflow.db

# Three test processes on two cores: most tests wait on servers, workers and sockets, not on a CPU, and no test
# asserts a duration (TEST_JOBS=1: one at a time). Two left the cores idle a fifth of the time.
TEST_JOBS ?= 3
# pytest's temp folders (stores, models, server logs: ~0.5 GB a run) are kept for the failed tests only.
KEEP_TMP := -o tmp_path_retention_policy=failed
test: install
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist worksteal -m "not slow" $(KEEP_TMP) $(PYTEST_ARGS)

# The long outside-fault scenarios (marked slow: 20-60 s each, ~3 min in all); .ci/run runs them after `make test`.
# Two processes: each scenario runs its own workers, Redis and store, and kills them on purpose.
SLOW_JOBS ?= 2
test-slow: install
	$(BIN)/python -m pytest -n $(SLOW_JOBS) --dist worksteal -m slow $(KEEP_TMP) $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check podium tests bench examples
	$(BIN)/mypy podium

bench: install
	$(BIN)/python bench/select_store.py
	$(BIN)/python bench/triton_overhead.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/deployable.py
	$(BIN)/python bench/costs.py
	$(BIN)/python bench/realistic.py

clean:
	rm -rf .podium bench/out .pytest_cache
