# Two entry points: `make demo` runs the main job on the embedded defaults,
# `make test` runs the whole suite. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench docs clean

$(BIN)/newsletter: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	@touch $@

demo: $(BIN)/newsletter
	$(BIN)/newsletter demo

# The whole suite twice: on SQLite files, then on a throwaway PostgreSQL cluster.
test: $(BIN)/newsletter
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest --db postgresql $(PYTEST_ARGS)

# ruff on all the code; mypy on the package (settings in pyproject.toml: strict for core/, delivery/).
lint: $(BIN)/newsletter
	$(BIN)/ruff check newsletter tests benchmarks
	$(BIN)/mypy newsletter

# The settings reference in docs/ is generated from the registry.
docs: $(BIN)/newsletter
	$(BIN)/python -m newsletter.core.settings_reference docs/configuration.md

bench: $(BIN)/newsletter
	$(BIN)/python benchmarks/matching.py
	$(BIN)/python benchmarks/import_csv.py

clean:
	rm -rf $(VENV) var
