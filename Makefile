# Two commands matter: `make demo` (the main job) and `make test` (everything CI runs).
# Both build a local virtual environment first, so a fresh machine needs only Python >= 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit site bench docs mutate clean

# An editable install in "compat" mode puts the project folder on sys.path through a .pth
# file, which type checkers follow; setuptools' default mode installs an import hook that
# mypy cannot see, so code outside the repository would find no certflow types.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; sys.exit("certflow needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,docs,postgresql]' --config-settings editable_mode=compat
	touch $(STAMP)

# The main job: the seeded simulation through the SQLite store, in a fresh demo database.
DEMO_DB := certflow-demo.db
demo: $(STAMP)
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(BIN)/certflow simulate --db $(DEMO_DB)

test: lint typecheck unit site

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# The documentation site (mkdocs.yml), strictly: a broken link or a missing page fails.
site: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The rollout core in memory, the SQLite store (which compares against the eventsourcing
# library: the `bench` extra), then the simulator.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,postgresql,bench]' --config-settings editable_mode=compat
	$(BIN)/python benchmarks/bench_rollout.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_sim.py

# Mutation testing of the pure core (long: not in CI): mutmut mutates the code, and
# tests/core/test_declaration_mutants.py mutates the declarations. Survivors:
# `mutmut results`, `mutmut show NAME`; the last run's figures are in docs/mutation.md.
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,postgresql,mutate]' --config-settings editable_mode=compat
	rm -rf mutants
	CERTFLOW_HYPOTHESIS_PROFILE=mutate $(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut export-cicd-stats
	$(BIN)/python -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); print("mutmut:", s)'
	$(BIN)/pytest -q -p no:cacheprovider tests/core/test_declaration_mutants.py
	$(BIN)/python -c 'from tests.core.test_declaration_mutants import MUTANTS, EQUIVALENT as E; print(f"declarations: {len(MUTANTS)} variants, {len(MUTANTS) - len(E)} killed, {len(E)} equivalent")'

docs: $(STAMP)
	$(BIN)/python -c 'import sys, certflow.core.machines as m; sys.stdout.write(m.diagrams_page())' > docs/machines.md
	$(BIN)/python tools/cli_docs.py docs/cli
	$(BIN)/python tools/docs_charts.py docs/images
	$(BIN)/python tools/run_notebooks.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info mutants site
