# Two entry points do all set-up on a fresh Debian machine:
#   make demo   build the built-in corpus and run the main job on it
#   make test   lint (ruff, yamllint) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= results/quickstart

.PHONY: setup system-deps demo test lint clean

system-deps:
	@bash scripts/install_system_deps.sh

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	PY=$(abspath $(PY)) bash scripts/quickstart.sh $(DEMO_DIR)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/yamllint -s .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
