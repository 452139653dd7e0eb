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

# The fast loop: unit tests and doctests, without the end-to-end ones (marker e2e). One torch
# thread unless OMP_NUM_THREADS says otherwise: these tensors are small, and on a busy 2-core
# machine torch's thread pool spin-waits for the busy core (tests/test_models.py's forward and
# vmap tests: 135-165 s with 2 threads, 21 s with 1). `make test` keeps torch's default, which
# the studies' bit-for-bit comparisons of in-process and worker runs rely on.
test-fast: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -m 'not slow and not gpu and not e2e'

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	for b in trainer loader ensemble repulsion annealing hessian curvature landscape curve \
		study_workers study_load; do \
		$(BIN)/python benchmarks/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
