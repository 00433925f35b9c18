# Lifeline: `make run` plays the demo on embedded NATS + PostgreSQL, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test files run side by side on this many pytest-xdist workers (a file stays on one worker, so
# a module's stack is started once).
WORKERS ?= 2

.PHONY: run test imports proto docs lint typecheck check bench clean lock check-upgrades

# Installs exactly what requirements-dev.lock names, hashes checked; the project itself goes
# in editable, built with the locked setuptools.
$(STAMP): requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements-dev.lock
	@# setuptools tells every editable install to beware of same-named folders (a note, not
	@# a problem here: the packages live under libs/ and services/); keep `make run` quiet.
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
	  $(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check -q >/dev/null
	touch $(STAMP)

# Re-resolve every dependency to its newest allowed version and rewrite both locks: the
# development set first, then the runtime set (the image's) held to the same versions.
# Run on purpose, then `make test`, and commit the locks with what they changed.
COMPILE := $(BIN)/pip-compile -q --all-build-deps --allow-unsafe --generate-hashes \
	--strip-extras --no-emit-index-url --no-emit-find-links
lock: $(STAMP)
	$(COMPILE) --upgrade --extra dev -o requirements-dev.lock pyproject.toml
	$(COMPILE) -c requirements-dev.lock -o requirements.lock pyproject.toml

# Try the newest releases in a throwaway venv and say what breaks (the lock is untouched).
check-upgrades:
	bash tools/check-upgrades

# The flood at 120x field time, watched on the console; Ctrl-C stops everything.
run: $(STAMP)
	$(BIN)/lifeline demo --speed 120 --stay

# The suite under coverage.py, the services it starts included (pyproject's
# [tool.coverage]); then the total and the fifteen least covered files. The exit status is
# the suite's.
test: $(STAMP) imports
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -q -n $(WORKERS) --dist loadfile; status=$$?; \
	$(BIN)/coverage combine -q && \
	$(BIN)/coverage report --sort=cover | awk 'NR <= 17 || /^TOTAL/'; \
	exit $$status

# The layer contracts in .importlinter (libs/README.md draws the floors): fails on a break.
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

# Regenerate the Python stubs from protos/ (committed; tests/unit/test_protos.py checks they match).
proto: $(STAMP)
	$(BIN)/python -m lifeline.protogen libs

# Regenerate docs/configuration.md from lifeline.settings (tests/unit/test_settings.py checks it).
docs: $(STAMP)
	$(BIN)/python -m lifeline.settings > docs/configuration.md

lint: $(STAMP)
	$(BIN)/ruff check libs services tests bench

typecheck: $(STAMP)
	$(BIN)/mypy libs/lifeline services

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python bench/auth_cost.py
	$(BIN)/python bench/assignment_latency.py
	$(BIN)/python bench/nearest_unit.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/city_day.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/responsiveness.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/surge.py

clean:
	rm -rf $(VENV) .lifeline .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
