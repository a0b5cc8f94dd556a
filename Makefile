# Two commands matter: `make demo` (the main job) and `make test` (everything CI runs).
# Both build a local virtual environment first, so a fresh machine needs only Python >= 3.11.
# It is installed from the committed lock, requirements/lock.txt: a fresh clone runs exactly
# what was tested (docs/development.md says how the lock is made and when to renew it).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LOCK   := requirements/lock.txt
PIP    := $(BIN)/python -m pip

.PHONY: demo test lint typecheck unit site bench calibrate docs mutate lock lock-upgrade test-latest clean

# pip installs the locked versions (-c: the lock constrains, the extras choose), pip and
# the build backend first; certflow itself is built by that locked hatchling
# (--no-build-isolation). Its editable install is a .pth file naming this folder, which type
# checkers follow, so code outside the repository finds certflow's types.
# A changed lock, pyproject.toml or Makefile rebuilds the environment from scratch (--clear),
# without the setuptools that Python 3.11's venv adds: nothing outside the lock is left.
$(STAMP): pyproject.toml $(LOCK) Makefile
	$(PYTHON) -c 'import sys; sys.exit("certflow needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv --clear $(VENV)
	$(PIP) uninstall --quiet --yes setuptools
	$(PIP) install --quiet -c $(LOCK) pip hatchling
	$(PIP) install --quiet -c $(LOCK) --no-build-isolation -e '.[test,docs,postgresql,worker,web]'
	touch $(STAMP)

# The main job: the seeded simulation through the SQLite store, in a fresh demo database.
# It ends with what `certflow worker` would have sent as the outbox delivered each effect:
# the administrators' e-mails (.eml) and the webhook bodies, in $(DEMO_OUTBOX).
DEMO_DB := certflow-demo.db
DEMO_OUTBOX := certflow-demo-outbox
demo: $(STAMP)
	rm -rf $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm $(DEMO_OUTBOX)
	$(BIN)/certflow simulate --db $(DEMO_DB)

test: lint typecheck unit site

# The site draws its Mermaid diagrams with a copy of mermaid.js it serves itself, for readers
# without internet: tools/vendor_mermaid.py fetches the release it pins with npm, once, and
# checks its SHA-256 (again whenever the script, and so the pin, changes). The suite needs it
# too: tests/test_site_browser.py draws the built pages in a browser without network.
MERMAID_JS := docs/javascripts/vendor/mermaid.min.js
$(MERMAID_JS): tools/vendor_mermaid.py
	$(PYTHON) tools/vendor_mermaid.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on every core (pytest-xdist): -n auto, and --dist loadfile keeps each test
# module on one worker, so an expensive module fixture (the rendered docs/cli pages, the
# site drawn in a browser) is built once.
PYTEST_PARALLEL := -n auto --dist loadfile
unit: $(STAMP) $(MERMAID_JS)
	$(BIN)/pytest $(PYTEST_PARALLEL)

# The documentation site (mkdocs.yml), strictly: a broken link or a missing page fails.
site: $(STAMP) $(MERMAID_JS)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The rollout core in memory, the SQLite store (which compares against the eventsourcing
# library: the `bench` extra), then the simulator.
bench: $(STAMP)
	$(PIP) install --quiet -c $(LOCK) --no-build-isolation -e '.[test,docs,postgresql,worker,web,bench]'
	$(BIN)/python benchmarks/bench_rollout.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_sim.py
	$(BIN)/python benchmarks/bench_worker.py
	$(BIN)/python benchmarks/bench_forecast.py
	$(BIN)/python benchmarks/bench_web.py
	$(BIN)/python benchmarks/bench_cli.py

# The forecast's calibration study (long: not in CI): histories from tools/calibrate.py's own
# generator, independent of certflow.sim; the table and chart go in docs/forecast.md.
calibrate: $(STAMP)
	nice -n 10 $(BIN)/python tools/calibrate.py --json calibration.json --chart docs/images/calibration.png

# Mutation testing of the pure core (long: not in CI): mutmut mutates the code, and
# tests/core/test_declaration_mutants.py mutates the declarations. Survivors:
# `mutmut results`, `mutmut show NAME`; the last run's figures are in docs/mutation.md.
mutate: $(STAMP)
	$(PIP) install --quiet -c $(LOCK) --no-build-isolation -e '.[test,docs,postgresql,worker,web,mutate]'
	rm -rf mutants
	CERTFLOW_HYPOTHESIS_PROFILE=mutate $(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut export-cicd-stats
	$(BIN)/python -c 'import json; s = json.load(open("mutants/mutmut-cicd-stats.json")); print("mutmut:", s)'
	$(BIN)/pytest -q -p no:cacheprovider tests/core/test_declaration_mutants.py
	$(BIN)/python -c 'from tests.core.test_declaration_mutants import MUTANTS, EQUIVALENT as E; print(f"declarations: {len(MUTANTS)} variants, {len(MUTANTS) - len(E)} killed, {len(E)} equivalent")'

docs: $(STAMP) $(MERMAID_JS)
	$(BIN)/python -c 'import sys, certflow.core.machines as m; sys.stdout.write(m.diagrams_page())' > docs/machines.md
	$(BIN)/python tools/cli_docs.py docs/cli
	$(BIN)/python tools/docs_charts.py docs/images
	CERTFLOW_WEB_SCREENSHOTS=docs/images/web $(BIN)/pytest -q -p no:cacheprovider tests/web/test_browser.py -k "javascript and not no"
	$(BIN)/python tools/run_notebooks.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The lock: every extra and tool of requirements/tools.in, resolved by uv for every platform
# and every Python >= 3.11 (--universal). `make lock` keeps the locked versions that still
# fit pyproject.toml (after a dependency was added or a range changed); `make lock-upgrade`
# takes the newest release of everything. Either way: `make test`, then commit the lock.
# uv itself comes from the lock; no stamp needed (the environment may not fit the new ranges).
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml requirements/tools.in --all-extras \
	--universal --python-version 3.11 --custom-compile-command 'make lock' --quiet --output-file $(LOCK)
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c $(LOCK) uv
	$(UV_COMPILE)

lock-upgrade:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c $(LOCK) uv
	$(UV_COMPILE) --upgrade

# The early warning for the next release: the newest release of every dependency, without
# the lock, in a throwaway environment (left for a look when something fails); what differs
# from the lock, mypy, then the suite, where a deprecation warning raised by certflow's own
# code is an error as always (pyproject.toml, filterwarnings). docs/development.md says when
# to run it and what to do when it fails.
LATEST := .venv-latest
test-latest: $(MERMAID_JS)
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip uninstall --quiet --yes setuptools
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test,docs,postgresql,worker,web]'
	$(LATEST)/bin/python tools/lock.py $(LOCK)
	$(LATEST)/bin/mypy
	$(LATEST)/bin/pytest $(PYTEST_PARALLEL)
	rm -rf $(LATEST)

clean:
	rm -rf $(VENV) $(LATEST) .mypy_cache .pytest_cache .ruff_cache .hypothesis build dist *.egg-info mutants site
