# Two commands for a newcomer: `make demo` and `make test`. Everything else they need is set up here.
# The app runs on Python 3.11, 3.12 or 3.13 (chargeback/interpreter.py says so and stops on another);
# another one than the default goes in a venv of its own: make demo PYTHON=python3.13 VENV=.venv-3.13
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The FinOps Foundation's FOCUS validator, which the tests run on the FOCUS exports. It needs
# Python >= 3.12 and numpy < 2, so it has a venv of its own; a test tool, never deployed.
FOCUS_VENV := .venv-focus

.PHONY: setup focus-validator lint test demo bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m chargeback.interpreter
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(BIN)/.installed node_modules/.installed

$(FOCUS_VENV)/.installed: requirements-focus.txt scripts/focus-python.sh scripts/find-python.sh
	rm -rf $(FOCUS_VENV)
	python=$$(sh scripts/focus-python.sh) && "$$python" -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/pip install --quiet --upgrade pip
	$(FOCUS_VENV)/bin/pip install --quiet -r requirements-focus.txt
	touch $@

focus-validator: $(FOCUS_VENV)/.installed

lint: setup
	$(BIN)/ruff check chargeback devtools function_app.py tests benchmarks
	$(BIN)/ruff format --check chargeback devtools function_app.py tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint focus-validator
	sh scripts/install-chromium.sh
	$(BIN)/pytest

demo: setup
	$(BIN)/python -m devtools demo $(ARGS)

bench: setup
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .venv-3.* $(FOCUS_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache artifacts
