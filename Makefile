# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo serve test lint typecheck contracts pytest bench bench-risk clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install ## StepGuard on SQLite (seeded demo subject, policy, API key) and the demo bank (docs/demo.md)
	$(BIN)/stepguard demo

test: install lint typecheck contracts pytest ## everything CI runs

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

contracts: install
	$(BIN)/lint-imports

pytest: install
	$(BIN)/pytest

bench: install ## latency and throughput figures (see bench/README.md)
	$(BIN)/python bench/decision.py

bench-risk: install ## risk engine evaluation on simulated logins (bench/risk/README.md)
	$(BIN)/python bench/risk/evaluate.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
