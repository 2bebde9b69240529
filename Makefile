# dockpulse: `make demo` runs the whole stack, `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= normal
TARGET ?= http://127.0.0.1:8000
DURATION ?= 4m

.PHONY: install test lint bench-exporter bench-relay bench-chaos images demo down stress stress-local webapp-image bench-time-to-detect

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

bench-relay: install
	$(PY) bench/relay.py --duration 15 --clients 2

# Failure scenarios of the alert path (root: the disk-full one mounts a small tmpfs).
bench-chaos: install
	$(PY) bench/chaos.py

# The whole stack on this machine (Docker engine, images, docker-compose); Ctrl-C leaves it up.
demo: install
	$(VENV)/bin/dockpulse demo

down: install
	$(VENV)/bin/dockpulse down

stress: install
	$(VENV)/bin/dockpulse stress $(PROFILE) --duration $(DURATION)

# Locust from the venv against a webapp already running at TARGET, headless for DURATION:
#   make stress-local PROFILE=cpu-intensive TARGET=http://127.0.0.1:8000 DURATION=60s
stress-local: install
	STRESS_LEVEL=$(PROFILE) $(VENV)/bin/locust -f loadtest/locustfile.py --headless \
		--host $(TARGET) --run-time $(DURATION) --stop-timeout 10

# The demo app's image (dockpulse/webapp:local) on the Debian Python base built here.
webapp-image: install
	$(VENV)/bin/dockpulse images
	$(PY) -c 'from dockpulse.engine import find_or_start_engine; from dockpulse.stack_images import WEBAPP, build_local_image; print(build_local_image(find_or_start_engine(), WEBAPP))'

bench-time-to-detect: install
	$(PY) bench/time_to_detect.py
