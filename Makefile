# synthkit: `make demo` and `make test` each set up .venv when it is missing, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup native demo test lint imports bench clean postgres

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,demo]'
	touch $(STAMP)

# The native training steps, compiled for this machine into the user cache (once per source and
# torch version; a no-op when built). Without a C++ compiler fits run the Python steps.
native: $(STAMP)
	@$(BIN)/synthkit native build || echo "synthkit: native steps not built; training uses the Python steps"

setup: $(STAMP) native

demo: $(STAMP) native
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

# The PostgreSQL tests start their own server from the machine's binaries (tests/postgres_server.py);
# install Debian's server package when none is found (as root, e.g. on CI), else the tests skip.
PG_BINARIES := $(shell pg_config --bindir 2>/dev/null)/postgres /usr/lib/postgresql/*/bin/postgres
postgres:
	@found=; for f in $(PG_BINARIES); do [ -x "$$f" ] && found=$$f; done; \
	if [ -n "$$found" ]; then echo "PostgreSQL server: $$found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing PostgreSQL server binaries (Debian package postgresql)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			postgresql >/dev/null; \
	else echo "No PostgreSQL server binaries and no root to install them: PostgreSQL tests will skip."; fi

test: lint postgres native
	$(BIN)/python -m pytest -q -m "not gpu" $(PYTEST_ARGS)

bench: $(STAMP) native
	$(BIN)/python benchmarks/tabular.py

clean:
	rm -rf $(VENV) demo-output build *.egg-info .pytest_cache
