# synthkit: `make demo` and `make test` each set up .venv when it is missing, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint imports bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,demo]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/synthkit demo --out demo-output

# import-linter reads the package from disk, so it checks an installed copy in which
# connectors/ and policies/ sit where they are imported from (synthkit/connectors, ...).
LAYOUT := $(shell mktemp -u /tmp/synthkit-layout.XXXXXX)
imports: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --target $(LAYOUT) . 2>/dev/null
	cd /tmp && PYTHONPATH=$(LAYOUT) $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml; \
		status=$$?; rm -rf $(LAYOUT); exit $$status

lint: imports
	$(BIN)/ruff check synthkit connectors policies tests benchmarks examples

test: lint
	$(BIN)/python -m pytest -q -m "not gpu" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/tabular.py

clean:
	rm -rf $(VENV) demo-output build *.egg-info .pytest_cache
