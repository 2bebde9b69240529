# dockpulse: `make demo` runs the whole stack, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= normal

.PHONY: install test lint bench-exporter bench-relay images demo down stress

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

images: install
	$(VENV)/bin/dockpulse images

bench-exporter: install
	$(PY) bench/exporter.py --containers 200
