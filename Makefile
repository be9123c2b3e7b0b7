# Every target bootstraps what it needs: a virtual environment with pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip
HOST ?= 127.0.0.1
EXAMPLES := examples/adder.py examples/text.py examples/iris/model.py examples/markov/model.py
TYPED := omi_adapters adapters/lambda/omi_lambda adapters/knative/omi_knative adapters/triton/omi_triton
WORKFLOWS := .github/workflows/ci.yml .github/workflows/release.yml
# The one version of the four distributions (omi_adapters/__init__.py).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' omi_adapters/__init__.py)
DIST ?= dist
# Wheels are stamped with the last commit's time, so a rebuild of the same commit is the same file.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 315532800)
IMAGE ?= localhost/omi-adapters-adder:$(VERSION)
IMAGE_CONTEXT ?= build/image
BASE ?=
BUILDAH ?= buildah
BUILDAH_FLAGS ?=

.PHONY: run test bench bench-quick bench-tools lint protos clean hooks dist image

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
	$(BIN)/mypy $(TYPED)
	$(BIN)/actionlint $(WORKFLOWS)

# The git hook runs the checks of .pre-commit-config.yaml, with the venv's pinned tools.
hooks: $(STAMP)
	$(BIN)/pre-commit install

# The four distributions, sdist and wheel (the wheel built from the sdist), into $(DIST).
dist: $(STAMP)
	rm -rf $(DIST)
	for project in . adapters/lambda adapters/knative adapters/triton; do \
		SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BIN)/python -m build -q --no-isolation --outdir $(DIST) $$project || exit 1; \
	done
	$(BIN)/twine check $(DIST)/*

# The example's image, from the Containerfile `omi build knative --wheel` writes, with the wheel of `make dist`.
image: dist
	$(BIN)/omi build knative examples/adder.py --out $(IMAGE_CONTEXT) --image $(IMAGE) \
		--wheel $(DIST)/omi_adapters-$(VERSION)-py3-none-any.whl $(if $(BASE),--base $(BASE))
	$(BUILDAH) bud --layers $(BUILDAH_FLAGS) -t $(IMAGE) -f $(IMAGE_CONTEXT)/Containerfile $(IMAGE_CONTEXT)

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
