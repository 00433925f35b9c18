# Lifeline: `make run` plays the demo on embedded NATS + PostgreSQL, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test proto lint typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# setuptools tells every editable install to beware of same-named folders (a note, not
	@# a problem here: the packages live under libs/ and services/); keep `make run` quiet.
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lifeline demo

test: $(STAMP)
	$(BIN)/pytest -q

# Regenerate the Python stubs from protos/ (committed; tests/unit/test_protos.py checks they match).
proto: $(STAMP)
	$(BIN)/python -m lifeline.protogen libs

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

clean:
	rm -rf $(VENV) .lifeline .pytest_cache .mypy_cache .ruff_cache
