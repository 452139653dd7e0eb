# Two commands on a fresh machine (Python 3.10+ with venv):
#   make demo   set up .venv and run the demo study on the embedded digits; prints the report path
#   make test   set up .venv with the test tools and run the test suite
# and, while editing, `make test-fast`: the unit tests and doctests, without the end-to-end tests
# (marker e2e), in under 2 minutes on 2 CPU cores.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint bench clean

# torch is installed first and pinned by constraints.txt, so pip never resolves an
# unpinned torch (which would pull a multi-gigabyte CUDA build on a CPU-only machine).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/losslab demo

test: setup
	$(BIN)/python -m pytest -q

# The fast loop: unit tests and doctests, without the end-to-end ones (marker e2e).
test-fast: setup
	$(BIN)/python -m pytest -q -m 'not slow and not gpu and not e2e'

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	for b in trainer loader ensemble repulsion annealing hessian landscape curve; do \
		$(BIN)/python benchmarks/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
