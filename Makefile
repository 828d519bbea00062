# The two set-up commands of the README: `make demo` and `make test`.
# Each creates (or reuses) .venv with Python 3.11+ and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow test-all bench bench-smoke lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	# edgecls[qat] (export --int8 --qat) without its pins, which [dev] refuses (docs/export.md "Installing"):
	# nothing installed above changes, and the QAT tests run instead of skipping
	$(BIN)/python -m pip install --quiet --no-deps 'tensorflow-model-optimization==0.8.1' 'tf-keras>=2.21.0,<2.22' \
		'dm-tree>=0.1.8' mock six
	touch $(STAMP)

## demo: the main job end to end on the bundled default dataset (digits)
demo: $(STAMP)
	$(BIN)/edgecls pipeline

## test: the default test suite (slow tests excluded; a few minutes on 2 cores)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

## test-slow: only the slow tests (CI runs them after `make test`)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

## test-all: every test, slow ones included
test-all: $(STAMP)
	$(BIN)/python -m pytest -q

## bench: pytest-benchmark suites on the digits model (Fashion-MNIST ones skip unless installed:
## apt-get install dataset-fashion-mnist); minutes. Numbers: `-s` prints them, results.json keeps them
bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-json=benchmarks/results.json

## bench-smoke: every file in benchmarks/ run on a tiny model in seconds, nothing judged (CI; ~3 min on 2 cores)
bench-smoke: $(STAMP)
	EDGECLS_BENCH_SMOKE=1 $(BIN)/python -m pytest benchmarks -q -p no:cacheprovider --benchmark-disable
	$(BIN)/python -m benchmarks.smoke

lint: $(STAMP)
	$(BIN)/ruff check edgecls tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
