# Every target bootstraps what it needs: a virtual environment with pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip
HOST ?= 127.0.0.1
EXAMPLES := examples/adder.py examples/text.py examples/iris/model.py

.PHONY: run test bench bench-quick bench-tools lint protos clean

$(STAMP): pyproject.toml requirements/dev.txt requirements/constraints.txt adapters/lambda/pyproject.toml adapters/knative/pyproject.toml adapters/triton/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "omi-adapters needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements/constraints.txt -r requirements/dev.txt \
		-e ".[all]" -e adapters/lambda -e adapters/knative -e adapters/triton
	touch $@

run: $(STAMP)
	$(BIN)/omi serve $(EXAMPLES) --host $(HOST)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy omi_adapters adapters/lambda/omi_lambda adapters/knative/omi_knative adapters/triton/omi_triton

# The load generators of bench/run.py: wrk (REST) and h2load (gRPC), from Debian packages.
bench-tools:
	@command -v wrk >/dev/null && command -v h2load >/dev/null && command -v taskset >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client util-linux; }

# Every figure of bench/RESULTS.md in one run (BENCH_SECONDS per measurement, BENCH_ROUNDS rounds).
bench: $(STAMP) bench-tools
	$(BIN)/python bench/run.py

# Every measurement very briefly, one round, no Triton: checks that each figure is produced.
bench-quick: $(STAMP) bench-tools
	BENCH_QUICK=1 $(BIN)/python bench/run.py

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
