# synthkit: `make demo` and `make test` each set up .venv when it is missing, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,demo]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/synthkit demo --out demo-output

lint: $(STAMP)
	$(BIN)/ruff check synthkit connectors policies tests benchmarks examples
	$(BIN)/lint-imports

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not gpu" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/tabular.py

clean:
	rm -rf $(VENV) demo-output build *.egg-info .pytest_cache
