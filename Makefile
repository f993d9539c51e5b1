# One task runner for people and CI. Only python3 (>= 3.11) and make are assumed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test chaos lint bench bench-balancer clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	$(BIN)/jb up $(ARGS)

# Two processes (pytest-xdist), a test file each at a time: most tests wait on real processes, so
# the suite takes about two thirds of the time it takes in one. TEST_JOBS=1 runs it in one.
TEST_JOBS ?= 2
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# Every fault of tests/chaos, each many times (make test runs one small cycle of them).
chaos: $(STAMP)
	JB_CHAOS_LONG=1 $(BIN)/pytest tests/chaos -m chaos --timeout 900 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check jobbalancer tests workers benchmarks
	$(BIN)/ruff format --check jobbalancer tests workers benchmarks
	$(BIN)/mypy

# Side by side with the peers (installed into benchmarks/.peers-venv); `make bench ARGS=--quick` for a smoke run.
bench: $(STAMP)
	$(BIN)/python benchmarks/side_by_side.py $(ARGS)

# The balancer alone with 1 to 1,000 simulated workers: assignments/s and CPU per assignment.
bench-balancer: $(STAMP)
	$(BIN)/python benchmarks/balancer_sim.py $(ARGS)

clean:
	rm -rf $(VENV) .jobbalancer .pytest_cache
